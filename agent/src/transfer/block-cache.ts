import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { BufferPool, IO_BUFFER_SIZE } from '../util/buffer-pool.js';

/**
 * Where a sender gets the bytes of its source files. Without one it reads them itself; with one
 * (fan-out), several sessions that send the same file share each block read from disk.
 */
export interface BlockSource {
  /**
   * Bytes [pos, pos+len) of `src` (fewer at the end of the file), read through `fh` unless
   * another session already has them. The buffer may be shared with other sessions: it is
   * read-only, and must be handed back once with release() when the transport has taken it.
   */
  read(src: Buffer, fh: FileHandle, pos: number, len: number): Promise<Buffer>;
  /** The same for the blocking small-file path (an open descriptor). */
  readSync(src: Buffer, fd: number, pos: number, len: number): Buffer;
  release(buf: Buffer): void;
}

/**
 * Bytes a BlockCache keeps for sessions that have not taken them yet. A session that falls this
 * far behind the fastest one loses the oldest blocks and reads them again itself, so it never
 * holds the others back and memory stays bounded.
 */
export const BLOCK_CACHE_MAX_BYTES = 256 * 1024 * 1024;

/** Counters of a BlockCache over its lifetime. */
export interface BlockCacheStats {
  /** reads from disk, re-reads included */
  blocksRead: number;
  bytesRead: number;
  /** blocks handed to consumers (the reader's own copy included): N nodes sharing = N x blocksRead */
  blocksServed: number;
  bytesServed: number;
  /** blocks read again because they had been dropped before a consumer came for them */
  reReads: number;
  reReadBytes: number;
  /** cached blocks dropped for the memory bound while consumers still waited for them */
  evictions: number;
  /** most bytes held for waiting consumers at any one time */
  peakBytes: number;
}

/** Disjoint sorted half-open intervals, flat: [s0, e0, s1, e1, ...]. Few per file: reads are sequential per chunk. */
class Ranges {
  private readonly v: number[] = [];

  add(s: number, e: number): void {
    const v = this.v;
    let i = 0;
    while (i < v.length && v[i + 1]! < s) i += 2;
    let j = i;
    let ns = s;
    let ne = e;
    while (j < v.length && v[j]! <= e) {
      ns = Math.min(ns, v[j]!);
      ne = Math.max(ne, v[j + 1]!);
      j += 2;
    }
    v.splice(i, j - i, ns, ne);
  }

  covers(s: number, e: number): boolean {
    const v = this.v;
    for (let i = 0; i < v.length && v[i]! <= s; i += 2) if (e <= v[i + 1]!) return true;
    return false;
  }
}

interface FileState {
  key: string;
  /** when known: a consumer that has taken [0, size) is done with the file and forgotten */
  size: number | undefined;
  /** consumers declared for this file, and the byte ranges each has taken */
  consumers: Map<BlockConsumer, Ranges>;
  /** ranges read from disk at least once (a later miss on them is a re-read) */
  read: Ranges;
  /** blocks held for consumers that have not taken them, by `${pos}:${len}` */
  blocks: Map<string, Block>;
}

interface Block {
  file: FileState | undefined;
  key: string;
  pos: number;
  len: number;
  backing: Buffer;
  pooled: boolean;
  /** the bytes read: a view of `backing`, the same object for every consumer */
  buf: Buffer | undefined;
  loading: Promise<Buffer> | undefined;
  /** declared consumers that have not taken it yet */
  waiting: Set<BlockConsumer>;
  /** buffers handed out and not yet released */
  holders: number;
  cached: boolean;
  freed: boolean;
  /** memory accounted for it while cached */
  bytes: number;
}

/** One session's view of a BlockCache (a BlockSource for its SendOptions). */
export class BlockConsumer implements BlockSource {
  /** blocks this consumer read from disk itself (first reads and re-reads) */
  blocksRead = 0;
  bytesRead = 0;
  /** blocks handed to it, whoever read them */
  blocksServed = 0;
  bytesServed = 0;
  /** blocks it read again because they were dropped before it came for them */
  reReads = 0;

  constructor(
    private readonly cache: BlockCache,
    readonly name: string,
  ) {}

  /**
   * This consumer will read `src` (all or part of it): blocks of it are kept until it has taken
   * them. With the file's `size`, the cache forgets the consumer's part once it has read it all.
   */
  expect(src: Buffer, size?: number): void {
    this.cache.expect(this, src, size);
  }

  read(src: Buffer, fh: FileHandle, pos: number, len: number): Promise<Buffer> {
    return this.cache.read(this, src, fh, pos, len);
  }

  readSync(src: Buffer, fd: number, pos: number, len: number): Buffer {
    return this.cache.readSync(this, src, fd, pos, len);
  }

  release(buf: Buffer): void {
    this.cache.release(buf);
  }

  /** This consumer reads nothing more: blocks kept only for it are dropped. Idempotent. */
  close(): void {
    this.cache.close(this);
  }
}

/**
 * A shared source of file blocks for several concurrent sessions sending the same files (one
 * source pushed to many nodes). The first session to need a block reads it from disk; the
 * buffer is kept until every session declared for that file (expect) has taken it, then goes
 * back to the pool once the last transport releases it. Every consumer gets the same Buffer
 * (read-only, never copied). Past `maxBytes` the oldest blocks are dropped: a session that far
 * behind re-reads them itself (counted), and nobody waits for it.
 */
export class BlockCache {
  readonly maxBytes: number;
  readonly blockSize: number;
  private readonly pool: BufferPool;
  private readonly files = new Map<string, FileState>();
  /** cached blocks, oldest first (Set iteration follows insertion) */
  private readonly cached = new Set<Block>();
  private readonly owners = new WeakMap<Buffer, Block>();
  private readonly consumerFiles = new Map<BlockConsumer, Set<FileState>>();
  private held = 0;
  private readonly totals: BlockCacheStats = {
    blocksRead: 0,
    bytesRead: 0,
    blocksServed: 0,
    bytesServed: 0,
    reReads: 0,
    reReadBytes: 0,
    evictions: 0,
    peakBytes: 0,
  };

  constructor(opts: { maxBytes?: number; blockSize?: number } = {}) {
    this.maxBytes = opts.maxBytes ?? BLOCK_CACHE_MAX_BYTES;
    this.blockSize = opts.blockSize ?? IO_BUFFER_SIZE;
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative integer, got ${this.maxBytes}`);
    this.pool = new BufferPool(this.blockSize, 16);
  }

  /** A new consumer (one session, or one attempt of one). */
  consumer(name = ''): BlockConsumer {
    const c = new BlockConsumer(this, name);
    this.consumerFiles.set(c, new Set());
    return c;
  }

  /** Bytes currently held for waiting consumers. */
  get bytesHeld(): number {
    return this.held;
  }

  /** Files with consumers still declared or blocks still held (bookkeeping that lives until they finish). */
  get filesTracked(): number {
    return this.files.size;
  }

  stats(): BlockCacheStats {
    return { ...this.totals };
  }

  expect(c: BlockConsumer, src: Buffer, size?: number): void {
    const files = this.consumerFiles.get(c);
    if (!files) return; // closed: it will read privately
    const key = src.toString('latin1');
    let file = this.files.get(key);
    if (!file) this.files.set(key, (file = { key, size, consumers: new Map(), read: new Ranges(), blocks: new Map() }));
    file.size ??= size;
    if (file.consumers.has(c)) return;
    file.consumers.set(c, new Ranges());
    files.add(file);
    // a consumer joining late (a retried node) still finds what the others have not finished with
    for (const b of file.blocks.values()) b.waiting.add(c);
  }

  async read(c: BlockConsumer, src: Buffer, fh: FileHandle, pos: number, len: number): Promise<Buffer> {
    const file = this.files.get(src.toString('latin1'));
    const hit = file?.blocks.get(`${pos}:${len}`);
    if (hit) {
      this.take(c, hit);
      let buf: Buffer;
      try {
        buf = hit.buf ?? (await hit.loading!);
      } catch (e) {
        if (hit.holders > 0) hit.holders--;
        throw e;
      }
      this.served(c, buf);
      return buf;
    }
    const b = this.start(c, file, pos, len);
    b.loading = (async () => {
      let n = 0;
      // a positional read may return less than asked before the end of the file
      while (n < len) {
        const { bytesRead } = await fh.read(b.backing, n, len - n, pos + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      return this.loaded(b, n);
    })();
    let buf: Buffer;
    try {
      buf = await b.loading;
    } catch (e) {
      this.failed(b);
      throw e;
    }
    this.readBy(c, b, buf);
    return buf;
  }

  readSync(c: BlockConsumer, src: Buffer, fd: number, pos: number, len: number): Buffer {
    const file = this.files.get(src.toString('latin1'));
    const hit = file?.blocks.get(`${pos}:${len}`);
    if (hit?.buf) {
      this.take(c, hit);
      this.served(c, hit.buf);
      return hit.buf;
    }
    if (hit) {
      // still being read asynchronously, which cannot be waited for here: read it apart
      hit.waiting.delete(c);
      if (hit.file) this.taken(c, hit.file, pos, len);
      if (hit.waiting.size === 0) this.uncache(hit);
    }
    const b = this.start(c, hit ? undefined : file, pos, len);
    let n = 0;
    try {
      while (n < len) {
        const r = fs.readSync(fd, b.backing, n, len - n, pos + n);
        if (r === 0) break;
        n += r;
      }
    } catch (e) {
      this.failed(b);
      throw e;
    }
    const buf = this.loaded(b, n);
    this.readBy(c, b, buf);
    return buf;
  }

  /** Give back a buffer from read/readSync (once per read). Foreign buffers are ignored. */
  release(buf: Buffer): void {
    const b = this.owners.get(buf);
    if (!b || b.holders <= 0) return;
    b.holders--;
    this.freeIfIdle(b);
  }

  close(c: BlockConsumer): void {
    const files = this.consumerFiles.get(c);
    if (!files) return;
    this.consumerFiles.delete(c);
    for (const file of files) {
      file.consumers.delete(c);
      for (const b of [...file.blocks.values()]) if (b.waiting.delete(c) && b.waiting.size === 0) this.uncache(b);
      this.forgetIfEmpty(file);
    }
  }

  /** Drop every cached block and consumer (end of a run). Buffers still out stay valid for their holders. */
  clear(): void {
    for (const c of [...this.consumerFiles.keys()]) this.close(c);
    for (const b of [...this.cached]) this.uncache(b);
    this.files.clear();
  }

  private take(c: BlockConsumer, b: Block): void {
    b.holders++;
    b.waiting.delete(c);
    if (b.waiting.size === 0) this.uncache(b);
    if (b.file) this.taken(c, b.file, b.pos, b.len);
  }

  private served(c: BlockConsumer, buf: Buffer): void {
    c.blocksServed++;
    c.bytesServed += buf.length;
    this.totals.blocksServed++;
    this.totals.bytesServed += buf.length;
  }

  /** A miss: a new block for `c`, cached when other declared consumers will want it too. */
  private start(c: BlockConsumer, file: FileState | undefined, pos: number, len: number): Block {
    const pooled = len <= this.blockSize && len > this.blockSize / 2;
    const backing = pooled ? this.pool.acquire() : len > this.blockSize ? Buffer.allocUnsafeSlow(len) : Buffer.allocUnsafe(len);
    const waiting = new Set<BlockConsumer>();
    let reRead = false;
    if (file) {
      for (const [o, taken] of file.consumers) if (o !== c && !taken.covers(pos, pos + len)) waiting.add(o);
      reRead = file.read.covers(pos, pos + len);
      file.read.add(pos, pos + len);
    }
    const b: Block = {
      file,
      key: `${pos}:${len}`,
      pos,
      len,
      backing,
      pooled,
      buf: undefined,
      loading: undefined,
      waiting,
      holders: 1,
      cached: false,
      freed: false,
      bytes: pooled ? this.blockSize : len,
    };
    if (reRead) {
      c.reReads++;
      this.totals.reReads++;
      this.totals.reReadBytes += len;
    }
    if (file && waiting.size > 0 && !file.blocks.has(b.key)) {
      file.blocks.set(b.key, b);
      this.cached.add(b);
      b.cached = true;
      this.held += b.bytes;
      this.evict();
      this.totals.peakBytes = Math.max(this.totals.peakBytes, this.held);
    }
    if (file) this.taken(c, file, pos, len);
    return b;
  }

  /** Record that `c` has [pos, pos+len) of `file`; a consumer with all of it is done with the file. */
  private taken(c: BlockConsumer, file: FileState, pos: number, len: number): void {
    const ranges = file.consumers.get(c);
    if (!ranges) return;
    ranges.add(pos, pos + len);
    // an empty file is read as one (empty) block
    if (file.size === undefined || !ranges.covers(0, Math.max(1, file.size))) return;
    file.consumers.delete(c);
    this.consumerFiles.get(c)?.delete(file);
    this.forgetIfEmpty(file);
  }

  private loaded(b: Block, n: number): Buffer {
    const buf = b.backing.subarray(0, n);
    b.buf = buf;
    this.owners.set(buf, b);
    return buf;
  }

  private readBy(c: BlockConsumer, b: Block, buf: Buffer): void {
    c.blocksRead++;
    c.bytesRead += buf.length;
    this.totals.blocksRead++;
    this.totals.bytesRead += buf.length;
    this.served(c, buf);
    // dropped (or served to all) while it was being read
    this.freeIfIdle(b);
  }

  /** The read failed: nobody gets this block; whoever waited on it sees the error. */
  private failed(b: Block): void {
    this.uncache(b);
    b.holders = 0;
    b.buf = undefined;
    if (!b.freed) {
      b.freed = true;
      if (b.pooled) this.pool.release(b.backing);
    }
  }

  private uncache(b: Block): void {
    if (!b.cached) return;
    b.cached = false;
    this.cached.delete(b);
    this.held -= b.bytes;
    if (b.file) {
      b.file.blocks.delete(b.key);
      this.forgetIfEmpty(b.file);
    }
    this.freeIfIdle(b);
  }

  private freeIfIdle(b: Block): void {
    if (b.cached || b.holders > 0 || b.freed || b.buf === undefined) return;
    b.freed = true;
    if (b.pooled) this.pool.release(b.backing);
  }

  private forgetIfEmpty(file: FileState): void {
    if (file.consumers.size === 0 && file.blocks.size === 0 && this.files.get(file.key) === file) this.files.delete(file.key);
  }

  /** Oldest first: those are the blocks only the slowest consumers still wait for. */
  private evict(): void {
    for (const b of this.cached) {
      if (this.held <= this.maxBytes) break;
      this.totals.evictions++;
      this.uncache(b);
    }
  }
}
