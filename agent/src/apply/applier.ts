import fs from 'node:fs';
import { PathEscapeError, SmartcopyError, fromSystemError } from '@smartcopy/protocol';
import { checkRelative, type PathJail } from '../jail/jail.js';
import { copyRange, nativeCopyFile } from '../native/index.js';
import { closeFd, closeQuietly, errnoOf, fstatFd, openFd, unlinkIfExists, writeFullAt } from '../util/fs-async.js';
import { asBuffer, pathKey, pathToDisplay } from '../util/paths.js';
import { checkCoverage, chunksHashOf, formatChunkRecord, latestChunks, readChunkLogFile, type ChunkRecord } from './chunk-log.js';
import { defaultCopyPool, type CopyPool } from './copy-pool.js';
import { hashFile } from '../verify/index.js';
import { checkSize, fdatasyncFd, finalizeFd, fsyncFd, ftruncateFd, renameReplacing, verifyFd } from './finalize.js';
import { checkTransferId, chunkLogPath, partPath, partPathLatin1 } from './part-name.js';
import { JOB_CHOWN, JOB_FSYNC, type CopyJob, type JobError, type JobOutcome } from './sync-ops.js';
import { mtimeOf, type ApplierOptions, type FileMeta, type VerifySpec } from './types.js';

/**
 * Whole files up to this size are gathered in memory and written, finalized and renamed by a
 * copy worker at commit: 7 syscalls as promises cost more than the data on small files.
 */
export const SMALL_FILE_MAX = 128 * 1024;
/** Bytes of small files an Applier holds in memory at most; beyond it files go to disk directly. */
export const SMALL_FILE_BUDGET = 32 * 1024 * 1024;
/** Native copies up to this size go to the copy workers; larger ones use the kernel's copy. */
export const NATIVE_BATCH_MAX = 256 * 1024;
/** Large native copies of one batch running at once (1 was slower, 4 no faster, see README). */
const LARGE_COPY_CONCURRENCY = 2;

const C = fs.constants;

/** A file being received into its temporary name. */
export interface PartFile {
  readonly partPath: Buffer;
  /** Positional write; writes may overlap in time and arrive out of order. */
  write(buf: Uint8Array, offset: number): Promise<void>;
  /**
   * Make the file visible: size check, fsync (if asked), optional hash check of what is on
   * disk, owner/mode/times, rename. On failure the part is removed and nothing appears under
   * the final name.
   */
  commit(opts?: { verify?: VerifySpec }): Promise<void>;
  /** Remove the part. Idempotent; a no-op after a successful commit. */
  discard(): Promise<void>;
}

/** One writer's handle on a `.part` shared by every writer of a large file's chunks. */
export interface SharedPart {
  readonly partPath: Buffer;
  write(buf: Uint8Array, offset: number): Promise<void>;
  /** Copy [offset, offset+length) of `src` into the same range of the part. */
  copyRangeFrom(src: Buffer, offset: number, length: number): Promise<void>;
  /** Append a verified chunk to the part's `.chunks` log (data is fdatasync'ed first with fsync on). */
  recordChunk(offset: number, length: number, hash: Uint8Array): Promise<void>;
  /** Drop this handle; the file is closed when the last handle of the process goes. */
  release(): Promise<void>;
}

export interface NativeBatchItem {
  src: Buffer;
  rel: Uint8Array;
  meta: FileMeta;
  transferId: string;
}

function displayRel(rel: Uint8Array): string {
  return rel.length === 0 ? '.' : pathToDisplay(rel);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function closedError(what: string): SmartcopyError {
  return new SmartcopyError('SC_ERR_INTERNAL', `${what}: the part was already committed, discarded or released`);
}

/** Open (creating) a temp name we own; a symlink planted there is removed, never followed. */
async function openPart(part: Buffer, flags: number): Promise<number> {
  try {
    return await openFd(part, flags | C.O_CREAT | C.O_NOFOLLOW, 0o600);
  } catch (e) {
    const code = errnoOf(e);
    if (code !== 'ELOOP' && code !== 'EMLINK') throw e;
    await fs.promises.unlink(part);
    return await openFd(part, (flags & ~C.O_TRUNC) | C.O_CREAT | C.O_EXCL, 0o600);
  }
}

/** Write all of `buf` at the end of an O_APPEND file. */
async function appendAll(fd: number, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    off += await new Promise<number>((res, rej) => fs.write(fd, buf, off, buf.length - off, null, (e, n) => (e ? rej(e) : res(n))));
  }
}

class Semaphore {
  private waiters: Array<() => void> = [];
  private active = 0;
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiters.shift()?.();
    }
  }
}

interface SharedState {
  rel: Uint8Array;
  meta: FileMeta;
  transferId: string;
  final: Buffer;
  part: Buffer;
  fd: number;
  refs: number;
  ready: Promise<void>;
  /** at least one chunk recorded by this process */
  recorded: boolean;
  /** committed or discarded: handles must not write any more (the fd closes with the last handle) */
  closed: boolean;
}

type Tracked =
  | { kind: 'file'; file: PartFileImpl }
  | { kind: 'native'; part: Buffer }
  | { kind: 'shared'; part: Buffer; state: SharedState };

/**
 * Puts received files on disk safely: every file is built under a temporary `.part` name in its
 * final directory and renamed only when complete (and verified when asked), so a final name
 * never holds a partial file. All paths go through the jail.
 */
export class Applier {
  /** parts created and not yet committed, for discardAll() */
  private readonly tracked = new Map<string, Tracked>();
  private readonly shared = new Map<string, SharedState>();
  private readonly largeCopies = new Semaphore(LARGE_COPY_CONCURRENCY);
  /** bytes of small files held in memory until their commit */
  bufferedBytes = 0;
  private aborted = false;
  private linkSeq = 0;

  constructor(
    readonly jail: PathJail,
    readonly opts: ApplierOptions,
    readonly pool: CopyPool = defaultCopyPool(),
  ) {}

  // ---- whole files ------------------------------------------------------------------------

  /** Start receiving a whole file. Small files stay in memory until commit (nothing on disk). */
  async createFile(rel: Uint8Array, meta: FileMeta, transferId: string): Promise<PartFile> {
    this.checkOpen();
    checkSizeField(meta, rel);
    const final = await this.finalLatin1(rel);
    const part = partPathLatin1(final, transferId);
    let file: PartFileImpl;
    if (meta.size <= SMALL_FILE_MAX && this.bufferedBytes + meta.size <= SMALL_FILE_BUDGET) {
      this.bufferedBytes += meta.size;
      file = new PartFileImpl(this, rel, final, part, meta, Buffer.alloc(meta.size), -1);
    } else {
      let fd: number;
      try {
        fd = await openPart(Buffer.from(part, 'latin1'), C.O_RDWR | C.O_TRUNC);
      } catch (e) {
        throw this.err(e, 'create', rel);
      }
      file = new PartFileImpl(this, rel, final, part, meta, undefined, fd);
    }
    this.tracked.set(part, { kind: 'file', file });
    return file;
  }

  /** Copy `src` (an absolute source path on this host) to `rel` with the kernel's copy, then finalize. */
  async nativeCopy(src: Buffer, rel: Uint8Array, meta: FileMeta, transferId: string, opts: { verify?: VerifySpec } = {}): Promise<void> {
    this.checkOpen();
    const final = await this.ensureFileParent(rel);
    const part = partPath(final, transferId);
    const key = pathKey(part);
    this.tracked.set(key, { kind: 'native', part });
    let fd = -1;
    try {
      try {
        await nativeCopyFile(src, part, { fresh: true });
      } catch (e) {
        throw await this.sourceOrDestError(e, src, rel);
      }
      fd = await openFd(part, C.O_RDWR | C.O_NOFOLLOW);
      if (this.opts.fsync) await fsyncFd(fd);
      if (opts.verify) await verifyFd(fd, opts.verify, displayRel(rel));
      const f = fd;
      fd = -1;
      if (await finalizeFd(f, part, final, meta, this.finalizeOpts())) this.jail.invalidate(rel);
    } catch (e) {
      if (fd >= 0) await closeQuietly(fd);
      await unlinkIfExists(part).catch(() => {});
      throw this.err(e, 'copy', rel);
    } finally {
      this.tracked.delete(key);
    }
  }

  /**
   * Native copies of many files. Small ones run as batched synchronous syscalls in the copy
   * workers, larger ones as kernel copies on the main thread. One result per item, in order:
   * null for success or that item's error; a failure never fails the batch.
   */
  async nativeCopyBatch(items: ReadonlyArray<NativeBatchItem>): Promise<Array<SmartcopyError | null>> {
    const results: Array<SmartcopyError | null> = new Array(items.length).fill(null);
    const large: Promise<void>[] = [];
    // per small item: its relative path (latin1) and parent directory key
    const rels: string[] = new Array(items.length);
    const dirs: string[] = new Array(items.length);
    const unknownDirs = new Map<string, Uint8Array>();
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      try {
        this.checkOpen();
        if (it.meta.size > NATIVE_BATCH_MAX) {
          large.push(
            this.largeCopies.run(() => this.nativeCopy(it.src, it.rel, it.meta, it.transferId)).catch((e: unknown) => {
              results[i] = this.err(e, 'copy', it.rel);
            }),
          );
          continue;
        }
        if (it.rel.length === 0) throw rootIsDir();
        checkRelative(it.rel);
        checkTransferId(it.transferId);
        const rel = asBuffer(it.rel).toString('latin1');
        const dir = rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
        rels[i] = rel;
        dirs[i] = dir;
        if (!this.jail.dirKnown(dir) && !unknownDirs.has(dir)) unknownDirs.set(dir, it.rel);
      } catch (e) {
        results[i] = this.err(e, 'copy', it.rel);
      }
    }
    // each new directory is checked (or created) once, not once per file in it
    const dirErrors = new Map<string, SmartcopyError>();
    if (unknownDirs.size > 0) {
      await Promise.all(
        [...unknownDirs].map(([dir, rel]) =>
          this.jail.ensureParent(rel, { create: true }).then(
            () => undefined,
            (e: unknown) => void dirErrors.set(dir, this.err(e, 'copy', rel)),
          ),
        ),
      );
    }
    const jobs: CopyJob[] = [];
    const jobItem: number[] = [];
    const prefix = this.jail.prefixLatin1;
    for (let i = 0; i < items.length; i++) {
      const rel = rels[i];
      if (rel === undefined || results[i] !== null) continue;
      const dirErr = dirErrors.get(dirs[i]!);
      if (dirErr) {
        results[i] = dirErr;
        continue;
      }
      const it = items[i]!;
      const final = prefix + rel;
      const job = this.job(final, partPathLatin1(final, it.transferId), it.meta);
      job.src = it.src.toString('latin1');
      jobs.push(job);
      jobItem.push(i);
    }
    if (jobs.length > 0) {
      const outcomes = await this.pool.runMany(jobs);
      for (let k = 0; k < outcomes.length; k++) {
        const i = jobItem[k]!;
        results[i] = this.outcomeError(outcomes[k]!, items[i]!.rel, items[i]!.src);
      }
    }
    await Promise.all(large);
    return results;
  }

  // ---- large files in chunks --------------------------------------------------------------

  /**
   * A handle on the shared `.part` of a large file that several writers fill in chunks. The part
   * is created if missing and sized to meta.size, never truncated by a later opener, so writers
   * in other processes can open the same name.
   */
  async openShared(rel: Uint8Array, meta: FileMeta, transferId: string): Promise<SharedPart> {
    this.checkOpen();
    checkSizeField(meta, rel);
    checkTransferId(transferId);
    let st = this.shared.get(transferId);
    if (st && !sameBytes(st.rel, rel)) {
      throw new SmartcopyError('SC_ERR_PROTOCOL', `transfer id ${transferId} is already used for ${JSON.stringify(displayRel(st.rel))}`, { path: displayRel(rel) });
    }
    if (!st) {
      const s: SharedState = { rel, meta, transferId, final: Buffer.alloc(0), part: Buffer.alloc(0), fd: -1, refs: 0, ready: Promise.resolve(), recorded: false, closed: false };
      s.ready = this.openSharedFile(s);
      this.shared.set(transferId, s);
      st = s;
    }
    st.refs++;
    try {
      await st.ready;
    } catch (e) {
      st.refs--;
      if (st.refs === 0 && this.shared.get(transferId) === st) this.shared.delete(transferId);
      throw this.err(e, 'create', rel);
    }
    return new SharedPartHandle(this, st);
  }

  private async openSharedFile(st: SharedState): Promise<void> {
    st.final = await this.ensureFileParent(st.rel);
    st.part = partPath(st.final, st.transferId);
    let fd: number;
    try {
      fd = await openPart(st.part, C.O_RDWR);
    } catch (e) {
      // another process created it between our unlink of a planted link and our O_EXCL
      if (errnoOf(e) !== 'EEXIST') throw e;
      fd = await openFd(st.part, C.O_RDWR | C.O_NOFOLLOW);
    }
    try {
      const s = await fstatFd(fd);
      // idempotent across openers: every one of them sizes the file to the same length
      if (s.size !== st.meta.size) await ftruncateFd(fd, st.meta.size);
    } catch (e) {
      await closeQuietly(fd);
      throw e;
    }
    st.fd = fd;
    this.tracked.set(pathKey(st.part), { kind: 'shared', part: st.part, state: st });
  }

  /** @internal */
  async releaseShared(st: SharedState): Promise<void> {
    st.refs--;
    if (st.refs > 0) return;
    if (this.shared.get(st.transferId) === st) this.shared.delete(st.transferId);
    st.closed = true;
    const fd = st.fd;
    st.fd = -1;
    if (fd < 0) return;
    try {
      await closeFd(fd);
    } catch (e) {
      throw this.err(e, 'close', st.rel);
    }
  }

  /**
   * Finish a chunked file: its chunk log must tile [0, size) with `chunkCount` chunks (else a
   * retryable SC_ERR_CHECKSUM_MISMATCH and the part is kept for a resume); then finalize like
   * PartFile.commit and delete the log. A whole-file hash mismatch removes part and log.
   */
  async commitShared(
    rel: Uint8Array,
    meta: FileMeta,
    transferId: string,
    opts: { chunkCount: number; verify?: VerifySpec; chunksHash?: Uint8Array },
  ): Promise<void> {
    this.checkOpen();
    const display = displayRel(rel);
    const final = await this.ensureFileParent(rel);
    const part = partPath(final, transferId);
    const log = chunkLogPath(part);
    let records: ChunkRecord[];
    try {
      records = await readChunkLogFile(log);
    } catch (e) {
      throw this.err(e, 'read chunk log of', rel);
    }
    checkCoverage(records, meta.size, opts.chunkCount, display);
    if (opts.chunksHash && opts.chunksHash.length > 0) {
      // Every chunk hash was checked against its bytes when it was written; this checks that the
      // recorded chunks, resumed ones included, are the sender's whole file.
      const got = await chunksHashOf(latestChunks(records));
      if (!got.equals(opts.chunksHash)) {
        await unlinkIfExists(part).catch(() => {});
        await unlinkIfExists(log).catch(() => {});
        this.tracked.delete(pathKey(part));
        this.shared.delete(transferId);
        throw new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `${display}: the chunks on disk do not match the source; run again to transfer it afresh`, { path: display });
      }
    }
    let fd = -1;
    try {
      fd = await openFd(part, C.O_RDWR | C.O_NOFOLLOW);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') {
        throw new SmartcopyError('SC_ERR_NOT_FOUND', `cannot commit ${JSON.stringify(display)}: its .part file is missing`, { path: display, cause: e });
      }
      throw this.err(e, 'commit', rel);
    }
    const st = this.shared.get(transferId);
    try {
      await checkSize(fd, meta, display);
      if (this.opts.fsync) await fsyncFd(fd);
      if (opts.verify) {
        try {
          await verifyFd(fd, opts.verify, display);
        } catch (e) {
          // some recorded chunk is wrong and we cannot tell which: start this file over
          await closeQuietly(fd);
          fd = -1;
          await unlinkIfExists(part).catch(() => {});
          await unlinkIfExists(log).catch(() => {});
          this.tracked.delete(pathKey(part));
          throw e;
        }
      }
      if (st) st.closed = true;
      const f = fd;
      fd = -1;
      if (await finalizeFd(f, part, final, meta, this.finalizeOpts())) this.jail.invalidate(rel);
    } catch (e) {
      if (fd >= 0) await closeQuietly(fd);
      throw this.err(e, 'commit', rel);
    }
    this.tracked.delete(pathKey(part));
    if (st && this.shared.get(transferId) === st) this.shared.delete(transferId);
    await unlinkIfExists(log).catch(() => {});
  }

  /** The verified chunks recorded so far for a chunked file ([] when there are none). */
  async readChunkLog(rel: Uint8Array, transferId: string): Promise<ChunkRecord[]> {
    checkTransferId(transferId);
    let final: Buffer;
    try {
      final = await this.jail.ensureParent(rel, { create: false });
    } catch (e) {
      if (e instanceof SmartcopyError && e.code === 'SC_ERR_NOT_FOUND') return [];
      throw e;
    }
    try {
      return await readChunkLogFile(chunkLogPath(partPath(final, transferId)));
    } catch (e) {
      throw this.err(e, 'read chunk log of', rel);
    }
  }

  /**
   * The recorded chunks that still hold what their record says: each recorded range of the .part
   * is read and hashed again (xxhash64, the chunk hash on the wire), so a damaged or tampered
   * .part is never resumed. Chunks without a hash (same-host copies) are not offered.
   */
  async verifiedChunks(rel: Uint8Array, transferId: string): Promise<ChunkRecord[]> {
    const records = latestChunks(await this.readChunkLog(rel, transferId));
    if (records.length === 0) return [];
    const part = partPath(await this.jail.ensureParent(rel, { create: false }), transferId);
    const good: ChunkRecord[] = [];
    for (const r of records) {
      if (r.hash.length !== 8) continue;
      const got = await hashFile(part, 'xxhash64', { offset: r.offset, length: r.length }).catch(() => undefined);
      if (got && got.equals(r.hash)) good.push(r);
    }
    return good;
  }

  // ---- directories, links, deletes ----------------------------------------------------------

  /**
   * Make `rel` a directory. An existing directory is left as it is; a file or symlink there is
   * replaced (type change). It is created owner-writable; setDirMeta applies the real mode and
   * times once its contents are written.
   */
  async mkdir(rel: Uint8Array, meta: FileMeta): Promise<void> {
    this.checkOpen();
    const abs = await this.jail.ensureParent(rel, { create: true });
    if (rel.length === 0) return;
    const mode = (meta.mode & 0o7777) | 0o700;
    try {
      try {
        await fs.promises.mkdir(abs, { mode });
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw e;
        const st = await fs.promises.lstat(abs);
        if (st.isDirectory()) return;
        await fs.promises.unlink(abs);
        this.jail.invalidate(rel);
        await fs.promises.mkdir(abs, { mode });
      }
      if (this.opts.preserveOwner) await fs.promises.lchown(abs, meta.uid, meta.gid);
    } catch (e) {
      throw this.err(e, 'create directory', rel);
    }
  }

  /** Make `rel` a symlink to `target` (bytes, not interpreted or followed), replacing what is there. */
  async symlink(rel: Uint8Array, target: Uint8Array, meta: FileMeta): Promise<void> {
    this.checkOpen();
    const final = await this.ensureFileParent(rel);
    const part = partPath(final, `ln${process.pid.toString(36)}-${(++this.linkSeq).toString(36)}`);
    try {
      await unlinkIfExists(part);
      await fs.promises.symlink(Buffer.from(target.buffer, target.byteOffset, target.byteLength), part);
      if (this.opts.preserveOwner) await fs.promises.lchown(part, meta.uid, meta.gid);
      const mtime = mtimeOf(meta);
      await fs.promises.lutimes(part, Date.now() / 1000, mtime);
      if (await renameReplacing(part, final)) this.jail.invalidate(rel);
    } catch (e) {
      await unlinkIfExists(part).catch(() => {});
      throw this.err(e, 'create symlink', rel);
    }
  }

  /** Remove a file, symlink (the link, not its target) or directory tree. Missing is fine; the root is refused. */
  async remove(rel: Uint8Array): Promise<void> {
    this.checkOpen();
    if (rel.length === 0) throw new PathEscapeError('.', 'refusing to remove the root directory');
    let abs: Buffer;
    try {
      abs = await this.jail.ensureParent(rel, { create: false });
    } catch (e) {
      // a missing parent: the path is already gone
      if (e instanceof SmartcopyError && e.code === 'SC_ERR_NOT_FOUND') return;
      throw e;
    }
    try {
      await fs.promises.rm(abs, { recursive: true, force: true });
    } catch (e) {
      throw this.err(e, 'remove', rel);
    } finally {
      this.jail.invalidate(rel);
    }
  }

  /** Apply a directory's mode, owner and mtime (after its contents are written). Never follows a symlink. */
  async setDirMeta(rel: Uint8Array, meta: FileMeta): Promise<void> {
    const { fd } = await this.jail.openNoFollow(rel, C.O_RDONLY | C.O_DIRECTORY);
    try {
      if (this.opts.preserveOwner) await new Promise<void>((res, rej) => fs.fchown(fd, meta.uid, meta.gid, (e) => (e ? rej(e) : res())));
      await new Promise<void>((res, rej) => fs.fchmod(fd, meta.mode & 0o7777, (e) => (e ? rej(e) : res())));
      await new Promise<void>((res, rej) => fs.futimes(fd, Date.now() / 1000, mtimeOf(meta), (e) => (e ? rej(e) : res())));
    } catch (e) {
      throw this.err(e, 'set attributes of', rel);
    } finally {
      await closeQuietly(fd);
    }
  }

  /**
   * Abort: remove every part this Applier created and did not commit, except shared parts with
   * recorded chunks (a later run resumes them). Later writes are refused with SC_ERR_ABORTED.
   */
  async discardAll(): Promise<void> {
    this.aborted = true;
    const work: Promise<unknown>[] = [];
    for (const t of [...this.tracked.values()]) {
      if (t.kind === 'file') work.push(t.file.discard());
      else if (t.kind === 'native') work.push(unlinkIfExists(t.part));
      else work.push(this.discardShared(t.state));
    }
    this.tracked.clear();
    await Promise.allSettled(work);
  }

  private async discardShared(st: SharedState): Promise<void> {
    if (this.shared.get(st.transferId) === st) this.shared.delete(st.transferId);
    st.closed = true;
    const fd = st.fd;
    st.fd = -1;
    if (fd >= 0) await closeQuietly(fd);
    const log = chunkLogPath(st.part);
    const keep = st.recorded || (await readChunkLogFile(log).catch(() => [])).length > 0;
    if (!keep) {
      await unlinkIfExists(st.part);
      await unlinkIfExists(log);
    }
  }

  // ---- internals -------------------------------------------------------------------------

  /** @internal */
  untrack(partLatin1: string): void {
    this.tracked.delete(partLatin1);
  }

  /** @internal */
  finalizeOpts(): { chown: boolean; fsyncDir: boolean } {
    return { chown: this.opts.preserveOwner, fsyncDir: this.opts.fsync };
  }

  /** @internal */
  job(final: string, part: string, meta: FileMeta): CopyJob {
    return {
      part,
      final,
      mode: meta.mode,
      uid: meta.uid,
      gid: meta.gid,
      atime: Date.now() / 1000,
      mtime: mtimeOf(meta),
      flags: (this.opts.fsync ? JOB_FSYNC : 0) | (this.opts.preserveOwner ? JOB_CHOWN : 0),
    };
  }

  /** @internal A worker outcome as null (success) or the item's error. */
  outcomeError(o: JobOutcome, rel: Uint8Array, src?: Buffer): SmartcopyError | null {
    if (o === null) return null;
    if ('removedDir' in o) {
      this.jail.invalidate(rel);
      return null;
    }
    return this.jobError(o.error, rel, src);
  }

  private jobError(je: JobError, rel: Uint8Array, src: Buffer | undefined): SmartcopyError {
    const display = displayRel(rel);
    if (je.code === 'EWORKER') return new SmartcopyError('SC_ERR_INTERNAL', `${JSON.stringify(display)}: ${je.message}`, { path: display, retryable: true });
    const e = Object.assign(new Error(je.message), { code: je.code, syscall: je.syscall });
    if (je.stage === 'source' && src) {
      if (je.code === 'ENOENT') return vanished(src, display, e);
      const se = fromSystemError(e, 'read source', pathToDisplay(src));
      return new SmartcopyError(se.code, se.message, { path: display, cause: e });
    }
    return fromSystemError(e, 'write', display);
  }

  private async sourceOrDestError(e: unknown, src: Buffer, rel: Uint8Array): Promise<unknown> {
    if (errnoOf(e) !== 'ENOENT') return e;
    const gone = await fs.promises.lstat(src).then(
      () => false,
      (e2: unknown) => errnoOf(e2) === 'ENOENT',
    );
    return gone ? vanished(src, displayRel(rel), e) : e;
  }

  /** @internal */
  err(e: unknown, action: string, rel: Uint8Array): SmartcopyError {
    return fromSystemError(e, action, displayRel(rel));
  }

  private checkOpen(): void {
    if (this.aborted) throw new SmartcopyError('SC_ERR_ABORTED', 'the transfer was aborted; no more files are written');
  }

  private async ensureFileParent(rel: Uint8Array): Promise<Buffer> {
    if (rel.length === 0) throw rootIsDir();
    return this.jail.ensureParent(rel, { create: true });
  }

  /** The absolute path of `rel` as a latin1 string, parents ensured; no promise when they are cached. */
  private async finalLatin1(rel: Uint8Array): Promise<string> {
    if (rel.length === 0) throw rootIsDir();
    if (!this.jail.parentKnown(rel)) await this.jail.ensureParent(rel, { create: true });
    return this.jail.prefixLatin1 + asBuffer(rel).toString('latin1');
  }
}

function checkSizeField(meta: FileMeta, rel: Uint8Array): void {
  if (!Number.isSafeInteger(meta.size) || meta.size < 0) {
    throw new SmartcopyError('SC_ERR_PROTOCOL', `bad file size ${meta.size}`, { path: displayRel(rel) });
  }
}

function rootIsDir(): SmartcopyError {
  return new SmartcopyError('SC_ERR_DEST_INVALID', 'the destination root is a directory; it cannot be replaced by a file', { path: '.' });
}

function vanished(src: Buffer, display: string, cause: unknown): SmartcopyError {
  return new SmartcopyError('SC_ERR_VANISHED', `${JSON.stringify(pathToDisplay(src))}: the source vanished before it could be copied`, { path: display, cause });
}

class PartFileImpl implements PartFile {
  private state: 'open' | 'committing' | 'committed' | 'discarded' = 'open';
  private committing: Promise<void> | undefined;
  /** in-memory content of a small file until commit (or until it outgrows the buffer) */
  private mem: Buffer | undefined;
  private extent = 0;
  private spilling: Promise<void> | undefined;
  private onDisk: boolean;
  private partBuf: Buffer | undefined;

  /** `final` and `part` are absolute paths as latin1 strings */
  constructor(
    private readonly a: Applier,
    private readonly rel: Uint8Array,
    private readonly final: string,
    private readonly part: string,
    private readonly meta: FileMeta,
    mem: Buffer | undefined,
    private fd: number,
  ) {
    this.mem = mem;
    this.onDisk = fd >= 0;
  }

  get partPath(): Buffer {
    this.partBuf ??= Buffer.from(this.part, 'latin1');
    return this.partBuf;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (this.state !== 'open') throw closedError('write');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SmartcopyError('SC_ERR_PROTOCOL', `bad write offset ${offset}`);
    const end = offset + buf.length;
    if (this.mem && this.spilling === undefined) {
      if (end <= this.mem.length) {
        this.mem.set(buf, offset);
        if (end > this.extent) this.extent = end;
        return;
      }
      this.spill();
    }
    try {
      if (this.spilling) await this.spilling;
      await writeFullAt(this.fd, buf, 0, buf.length, offset);
    } catch (e) {
      throw this.a.err(e, 'write', this.rel);
    }
  }

  /** Move the in-memory content to the part file; later writes go to disk. */
  private spill(): Promise<void> {
    this.spilling ??= (async () => {
      const mem = this.mem!;
      this.fd = await openPart(this.partPath, C.O_RDWR | C.O_TRUNC);
      this.onDisk = true;
      if (this.extent > 0) await writeFullAt(this.fd, mem, 0, this.extent, 0);
      this.dropMem();
    })();
    return this.spilling;
  }

  private dropMem(): void {
    if (this.mem) {
      this.a.bufferedBytes -= this.mem.length;
      this.mem = undefined;
    }
  }

  async commit(opts: { verify?: VerifySpec } = {}): Promise<void> {
    if (this.state === 'committed') return;
    if (this.state !== 'open') throw closedError('commit');
    this.state = 'committing';
    this.committing = this.doCommit(opts);
    try {
      await this.committing;
      this.state = 'committed';
    } catch (e) {
      this.state = 'discarded';
      throw e;
    } finally {
      this.a.untrack(this.part);
    }
  }

  private async doCommit(opts: { verify?: VerifySpec }): Promise<void> {
    const display = displayRel(this.rel);
    if (this.mem && this.spilling === undefined && !opts.verify) {
      const data = this.mem;
      const extent = this.extent;
      this.dropMem();
      if (extent !== this.meta.size) {
        throw new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `${JSON.stringify(display)}: ${extent} bytes were written, the file has ${this.meta.size}; the file was not replaced`, { path: display, retryable: true });
      }
      const job = this.a.job(this.final, this.part, this.meta);
      job.data = data;
      // Buffer.alloc gave `data` an ArrayBuffer of its own: move it to the worker, no copy
      const transfer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.byteLength > 0 ? (data.buffer as ArrayBuffer) : undefined;
      const err = this.a.outcomeError(await this.a.pool.run(job, transfer), this.rel);
      if (err) throw err;
      return;
    }
    try {
      if (this.mem) await this.spill();
      else if (this.spilling) await this.spilling;
      await checkSize(this.fd, this.meta, display);
      if (this.a.opts.fsync) await fsyncFd(this.fd);
      if (opts.verify) await verifyFd(this.fd, opts.verify, display);
      const fd = this.fd;
      this.fd = -1;
      if (await finalizeFd(fd, this.partPath, Buffer.from(this.final, 'latin1'), this.meta, this.a.finalizeOpts())) this.a.jail.invalidate(this.rel);
    } catch (e) {
      if (this.fd >= 0) await closeQuietly(this.fd);
      this.fd = -1;
      await unlinkIfExists(this.partPath).catch(() => {});
      throw this.a.err(e, 'commit', this.rel);
    }
  }

  async discard(): Promise<void> {
    if (this.state === 'committing') await this.committing!.catch(() => {});
    if (this.state === 'committed' || this.state === 'discarded') return;
    this.state = 'discarded';
    this.a.untrack(this.part);
    this.dropMem();
    if (this.spilling) await this.spilling.catch(() => {});
    if (this.fd >= 0) await closeQuietly(this.fd);
    this.fd = -1;
    if (this.onDisk) await unlinkIfExists(this.partPath);
  }
}

class SharedPartHandle implements SharedPart {
  private released = false;

  constructor(
    private readonly a: Applier,
    private readonly st: SharedState,
  ) {}

  get partPath(): Buffer {
    return this.st.part;
  }

  private live(what: string, offset: number, length: number): number {
    if (this.released || this.st.closed || this.st.fd < 0) throw closedError(what);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.st.meta.size) {
      throw new SmartcopyError('SC_ERR_PROTOCOL', `${what} of ${length} bytes at ${offset} lies outside the file (${this.st.meta.size} bytes)`, { path: displayRel(this.st.rel) });
    }
    return this.st.fd;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    const fd = this.live('write', offset, buf.length);
    try {
      await writeFullAt(fd, buf, 0, buf.length, offset);
    } catch (e) {
      throw this.a.err(e, 'write', this.st.rel);
    }
  }

  async copyRangeFrom(src: Buffer, offset: number, length: number): Promise<void> {
    const fd = this.live('copy', offset, length);
    let srcFd: number;
    try {
      srcFd = await openFd(src, C.O_RDONLY);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') throw vanished(src, displayRel(this.st.rel), e);
      const se = fromSystemError(e, 'read source', pathToDisplay(src));
      throw new SmartcopyError(se.code, se.message, { path: displayRel(this.st.rel), cause: e });
    }
    try {
      await copyRange(srcFd, fd, offset, length);
    } catch (e) {
      if (e instanceof SmartcopyError) throw new SmartcopyError(e.code, `${JSON.stringify(pathToDisplay(src))}: ${e.message}`, { path: displayRel(this.st.rel), retryable: e.retryable });
      throw this.a.err(e, 'copy', this.st.rel);
    } finally {
      await closeQuietly(srcFd);
    }
  }

  async recordChunk(offset: number, length: number, hash: Uint8Array): Promise<void> {
    const fd = this.live('record chunk', offset, length);
    try {
      // the log must never claim data the disk does not have
      if (this.a.opts.fsync) await fdatasyncFd(fd);
      const line = Buffer.from(formatChunkRecord(offset, length, hash), 'latin1');
      // one O_APPEND write per record: appends from several writers (and processes) never interleave
      const logFd = await openFd(chunkLogPath(this.st.part), C.O_WRONLY | C.O_APPEND | C.O_CREAT | C.O_NOFOLLOW, 0o600);
      try {
        await appendAll(logFd, line);
        if (this.a.opts.fsync) await fdatasyncFd(logFd);
      } finally {
        await closeQuietly(logFd);
      }
      this.st.recorded = true;
    } catch (e) {
      throw this.a.err(e, 'record chunk of', this.st.rel);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.a.releaseShared(this.st);
  }
}
