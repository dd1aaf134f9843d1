import { SmartcopyError } from '../errors.js';
import { createHasher, xxh64, type HashAlgo, type Hasher } from '../codec/hash.js';
import { MAX_PAYLOAD_SIZE } from '../framing/frame.js';
import { DeltaOpKind, type DeltaOp } from '../schema/messages.js';
import { KERNEL_PREFILTER, KERNEL_HIT, KERNEL_S1, KERNEL_S2, createKernel, prefilterMask, type Kernel } from './kernel.js';
import { WEAK_MIX } from './rolling.js';
import type { BasisSignature } from './signature.js';

/** Default bound on literal bytes per batch (one DeltaOps frame payload). */
export const DEFAULT_MAX_LITERAL_BYTES = 1024 * 1024;
/** Default bound on ops per batch (keeps a DeltaOps header around 1 MiB at worst). */
export const DEFAULT_MAX_OPS = 65536;
/**
 * Most hash-chain entries examined at one offset (rsync's MAX_CHAIN_LEN idea): a basis made of
 * colliding blocks cannot make every offset of the new file walk thousands of candidates.
 */
export const MAX_CHAIN = 64;
/** Longest single COPY op; runs longer than this are split (the wire field is a uint32). */
export const MAX_COPY_OP = 1 << 30;
/** Literal bytes in a batch from which its buffer is made full size at once (see growLiterals). */
const LITERALS_FULL_AT = 256 * 1024;
/** The new file is scanned in windows of this many bytes copied into the kernel's memory. */
const SCAN_WINDOW = 1024 * 1024;

/** One DeltaOps frame's worth: ops in order, and the literal bytes they consume, in order. */
export interface DeltaBatch {
  ops: DeltaOp[];
  /** exactly the sum of the LITERAL ops' lengths; owned by the caller once handed out */
  literals: Buffer;
}

export interface MatcherOptions {
  /** the session's strong-hash seed (the one the signature was built with) */
  seed: bigint | number;
  /** literal bytes per batch, 1..MAX_PAYLOAD_SIZE (default 1 MiB) */
  maxLiteralBytes?: number;
  /** ops per batch (default 65536) */
  maxOps?: number;
  /** hasher fed every byte of the new file, digested by finish() (see Matcher.create) */
  hasher?: Hasher | null;
  /** buffer for a batch's literals; the matcher fills it and hands it out (lets callers pool) */
  allocLiterals?: (size: number) => Buffer;
}

export interface MatchStats {
  /** bytes of the new file seen */
  bytes: number;
  literalBytes: number;
  copyBytes: number;
  matchedBlocks: number;
  /** weak-sum hits the strong hash turned down */
  falseAlarms: number;
}

export interface MatchResult {
  batches: DeltaBatch[];
  /** whole-file digest of the new file (null without a hasher) */
  hash: Buffer | null;
  stats: MatchStats;
}

const EMPTY = Buffer.alloc(0);
const NO_BATCHES: readonly DeltaBatch[] = Object.freeze([]);

function ceilLog2(n: number): number {
  let b = 0;
  while (2 ** b < n) b++;
  return b;
}

/*
 * Kernels (WebAssembly instances holding a prefilter, a block table and a scan window) are
 * reused: a fresh one per file would cost a megabyte-sized allocation each time.
 */
const IDLE_KERNELS_CAP = 4;
const idleKernels: Kernel[] = [];

function takeKernel(bytes: number): Kernel {
  const at = idleKernels.findIndex((k) => k.heap.length >= bytes);
  if (at >= 0) return idleKernels.splice(at, 1)[0]!;
  return createKernel(bytes);
}

function releaseKernel(k: Kernel): void {
  if (idleKernels.length >= IDLE_KERNELS_CAP) idleKernels.shift();
  idleKernels.push(k);
}

/**
 * Sender side of delta sync: fed the new file in pieces of any size, finds the basis blocks it
 * contains (by the receiver's signature) and produces COPY / LITERAL ops in bounded batches.
 * It keeps at most one block of the new file (plus the piece being fed) and at most one
 * batch of literals, and hashes the whole new file on the way.
 */
export class Matcher {
  private readonly sig: BasisSignature;
  private readonly seed: bigint;
  private readonly B: number;
  /** blocks of exactly B bytes; a short last block can only match at the very end */
  private readonly fullBlocks: number;
  /** imul(weak, WEAK_MIX) >>> wordShift: the weak sum's 16-bit word in the prefilter */
  private readonly wordShift: number;
  /** imul(weak, WEAK_MIX) >>> tableShift: the weak sum's chain */
  private readonly tableShift: number;
  private readonly kernel: Kernel;
  private readonly heap: Uint8Array;
  /** byte offset of the prefilter in kernel memory (KERNEL_PREFILTER) */
  private readonly filterAt: number;
  /** byte offset of the scan window in kernel memory: the carry, then the piece being scanned */
  private readonly dataAt: number;
  private readonly head: Int32Array;
  private readonly next: Int32Array;
  private readonly maxLiteral: number;
  private readonly maxOps: number;
  private readonly alloc: (size: number) => Buffer;
  private readonly hasher: Hasher | null;

  // rolling state: the window starts at `pos` (stream offset); bytes before it are decided
  private pos = 0;
  private s1 = 0;
  private s2 = 0;
  private weakValid = false;
  private checked = false;
  private lastBlock = -1;
  /** undecided bytes from `pos` on, kept at dataAt when a piece ended before a whole window */
  private carryLength = 0;
  private done = false;

  // output
  private ops: DeltaOp[] = [];
  private lit: Buffer | null = null;
  private litLength = 0;
  private runOffset = 0;
  private runLength = 0;
  private out: DeltaBatch[] = [];
  private readonly stats: MatchStats = { bytes: 0, literalBytes: 0, copyBytes: 0, matchedBlocks: 0, falseAlarms: 0 };

  constructor(sig: BasisSignature, opts: MatcherOptions) {
    if (!sig.complete) {
      throw new SmartcopyError('SC_ERR_INTERNAL', `Matcher needs a complete signature (${sig.received} of ${sig.blockCount} blocks)`);
    }
    this.sig = sig;
    this.seed = BigInt(opts.seed);
    this.B = sig.blockSize;
    this.maxLiteral = opts.maxLiteralBytes ?? DEFAULT_MAX_LITERAL_BYTES;
    this.maxOps = opts.maxOps ?? DEFAULT_MAX_OPS;
    if (!Number.isInteger(this.maxLiteral) || this.maxLiteral < 1 || this.maxLiteral > MAX_PAYLOAD_SIZE) {
      throw new SmartcopyError('SC_ERR_INTERNAL', `maxLiteralBytes ${this.maxLiteral} is outside 1..${MAX_PAYLOAD_SIZE}`);
    }
    if (!Number.isInteger(this.maxOps) || this.maxOps < 1) throw new SmartcopyError('SC_ERR_INTERNAL', `maxOps ${this.maxOps} < 1`);
    this.alloc = opts.allocLiterals ?? ((n) => Buffer.allocUnsafe(n));
    this.hasher = opts.hasher ?? null;

    this.fullBlocks = Math.floor(sig.basisSize / this.B);
    // The prefilter (≈ 64 bits per block in 16-bit words, at most 16 MiB; see prefilterMask)
    // turns away all but ~0.2% of unrelated offsets inside the kernel's loop, which then checks
    // those against the block table itself: it comes back to JS only when a block has the very
    // same weak sum. One bit per block at 128 bits a block let 0.8% through, in twice the cache.
    const lg = ceilLog2(Math.max(1, this.fullBlocks));
    const filterBits = Math.min(27, Math.max(16, lg + 6));
    const tableBits = Math.min(filterBits, Math.max(4, lg + 1));
    this.wordShift = 32 - (filterBits - 4);
    this.tableShift = 32 - tableBits;
    const filterBytes = 2 ** filterBits / 8;
    // kernel memory: prefilter, chain heads, next-in-chain, weak sums (all the kernel reads), then the scan window
    this.filterAt = KERNEL_PREFILTER;
    const headAt = this.filterAt + filterBytes;
    const nextAt = headAt + 4 * 2 ** tableBits;
    const weakAt = nextAt + 4 * this.fullBlocks;
    this.dataAt = weakAt + 4 * this.fullBlocks;
    this.kernel = takeKernel(this.dataAt + SCAN_WINDOW + 2 * this.B);
    this.heap = this.kernel.heap;
    this.heap.fill(0, this.filterAt, headAt);
    const buf = this.heap.buffer;
    this.head = new Int32Array(buf, headAt, 2 ** tableBits).fill(-1);
    this.next = new Int32Array(buf, nextAt, this.fullBlocks);
    new Int32Array(buf, weakAt, this.fullBlocks).set(sig.weak.subarray(0, this.fullBlocks));
    this.kernel.configure({
      B: this.B, wordShift: this.wordShift, head: headAt, tableShift: this.tableShift,
      next: nextAt, weak: weakAt, blocks: this.fullBlocks, chain: MAX_CHAIN,
    });
    this.buildIndex();
  }

  /** A matcher whose finish() also returns the new file's whole-file hash (`null`: none). */
  static async create(sig: BasisSignature, opts: Omit<MatcherOptions, 'hasher'> & { hashAlgo?: HashAlgo | null }): Promise<Matcher> {
    const algo = opts.hashAlgo === undefined ? 'xxhash64' : opts.hashAlgo;
    return new Matcher(sig, { ...opts, hasher: algo === null ? null : await createHasher(algo) });
  }

  private buildIndex(): void {
    const { weak, strong, strongLength: sl } = this.sig;
    const { head, next, wordShift, tableShift } = this;
    const words = new Uint16Array(this.heap.buffer, this.filterAt, 2 ** (32 - wordShift));
    for (let b = 0; b < this.fullBlocks; b++) {
      const w = weak[b]!;
      const m = Math.imul(w, WEAK_MIX);
      words[m >>> wordShift]! |= prefilterMask(w);
      const t = m >>> tableShift;
      // A block identical (by both sums) to one already chained adds nothing but chain length;
      // it stays reachable as "the next sequential block", which is checked by index.
      let dup = false;
      for (let j = head[t]!, n = 0; j >= 0 && n < MAX_CHAIN; j = next[j]!, n++) {
        if (weak[j] === w && sameStrong(strong, j * sl, strong, b * sl, sl)) {
          dup = true;
          break;
        }
      }
      if (dup) {
        next[b] = -1;
        continue;
      }
      next[b] = head[t]!;
      head[t] = b;
    }
  }

  /** Current counters. */
  get progress(): Readonly<MatchStats> {
    return this.stats;
  }

  /**
   * Feed the next bytes of the new file. Returns the batches completed meanwhile (usually
   * none: a batch closes when its literals or ops are full, or at finish()). `data` is not
   * kept after the call.
   */
  update(data: Uint8Array): readonly DeltaBatch[] {
    if (this.done) throw new SmartcopyError('SC_ERR_INTERNAL', 'Matcher.update() after finish()');
    if (data.length === 0) return NO_BATCHES;
    for (let at = 0; at < data.length; ) {
      const n = Math.min(SCAN_WINDOW, data.length - at);
      this.heap.set(data.subarray(at, at + n), this.dataAt + this.carryLength);
      at += n;
      this.scanInput(n);
    }
    return this.takeOut();
  }

  /**
   * Room for the next bytes of the new file (up to 1 MiB), for a reader that reads straight
   * into it (`fs.read(fd, matcher.inputBuffer(), ...)`) and then calls `commit(bytesRead)`:
   * this saves the copy `update()` makes. Valid until the next call on the matcher.
   */
  inputBuffer(): Uint8Array {
    const at = this.dataAt + this.carryLength;
    return this.heap.subarray(at, at + SCAN_WINDOW);
  }

  /** The first `n` bytes of inputBuffer() are the next bytes of the new file. */
  commit(n: number): readonly DeltaBatch[] {
    if (this.done) throw new SmartcopyError('SC_ERR_INTERNAL', 'Matcher.commit() after finish()');
    if (!Number.isInteger(n) || n < 0 || n > SCAN_WINDOW) throw new SmartcopyError('SC_ERR_INTERNAL', `Matcher.commit(${n}) outside 0..${SCAN_WINDOW}`);
    if (n > 0) this.scanInput(n);
    return this.takeOut();
  }

  private scanInput(n: number): void {
    const heap = this.heap;
    const dataAt = this.dataAt;
    const start = dataAt + this.carryLength;
    this.hasher?.update(heap.subarray(start, start + n));
    this.stats.bytes += n;
    // heap[dataAt] holds stream byte `pos`
    const base = this.pos - dataAt;
    const end = start + n;
    this.process(base, end);
    const from = this.pos - base;
    heap.copyWithin(dataAt, from, end);
    this.carryLength = end - from;
  }

  /** Slide over the windows in heap[pos - base, len) (heap[x] is stream byte base + x). */
  private process(base: number, len: number): void {
    const buf = this.heap;
    const { scan, sums, words } = this.kernel;
    const B = this.B;
    const last = len - B;
    let i = this.pos - base;
    let litStart = i;
    let s1 = this.s1;
    let s2 = this.s2;
    let weakValid = this.weakValid;
    let checked = this.checked;
    if (this.fullBlocks === 0) {
      // nothing to find: skip to the last window start that might still be needed at the end
      if (last + 1 > i) {
        i = last + 1;
        weakValid = false;
      }
    } else {
      for (;;) {
        if (!weakValid) {
          if (i > last) break;
          sums(i, i + B);
          s1 = words[KERNEL_S1]!;
          s2 = words[KERNEL_S2]!;
          weakValid = true;
          checked = false;
        }
        if (checked) {
          if (i >= last) break;
          const o = buf[i]!;
          s1 = s1 - o + buf[i + B]!;
          s2 = (s2 + s1 - B * o) | 0;
          i++;
          checked = false;
        }
        i = scan(i, last, s1, s2, this.lastBlock + 1);
        s1 = words[KERNEL_S1]!;
        s2 = words[KERNEL_S2]!;
        checked = true;
        if (words[KERNEL_HIT] === 0) break;
        const block = this.findBlock(buf, i, (s2 << 16) | (s1 & 0xffff));
        if (block < 0) continue;
        this.literal(buf, litStart, i);
        this.copy(block * B, B);
        this.lastBlock = block;
        this.stats.matchedBlocks++;
        i += B;
        litStart = i;
        weakValid = false;
      }
    }
    this.literal(buf, litStart, i);
    this.pos = base + i;
    this.s1 = s1;
    this.s2 = s2;
    this.weakValid = weakValid;
    this.checked = checked;
  }

  /** The basis block whose sums equal the window at `i`, preferring the one after the last match; -1 if none. */
  private findBlock(buf: Uint8Array, i: number, weak: number): number {
    const { weak: weaks, strong, strongLength: sl } = this.sig;
    let digest: Buffer | null = null;
    const want = this.lastBlock + 1;
    if (want < this.fullBlocks && weaks[want] === weak) {
      digest = xxh64(buf.subarray(i, i + this.B), this.seed);
      if (sameStrong(digest, 0, strong, want * sl, sl)) return want;
      this.stats.falseAlarms++;
    }
    const next = this.next;
    for (let j = this.head[Math.imul(weak, WEAK_MIX) >>> this.tableShift]!, n = 0; j >= 0 && n < MAX_CHAIN; j = next[j]!, n++) {
      if (weaks[j] !== weak || j === want) continue;
      digest ??= xxh64(buf.subarray(i, i + this.B), this.seed);
      if (sameStrong(digest, 0, strong, j * sl, sl)) return j;
      this.stats.falseAlarms++;
    }
    return -1;
  }

  private literal(src: Uint8Array, start: number, end: number): void {
    if (end <= start) return;
    this.closeRun();
    this.stats.literalBytes += end - start;
    while (start < end) {
      // Settle the op first: starting a new op may close the batch (maxOps), and the bytes must
      // land in the buffer of the batch that holds their op.
      let op = this.ops.length > 0 ? this.ops[this.ops.length - 1]! : null;
      if (op === null || op.kind !== DeltaOpKind.LITERAL) {
        if (this.ops.length >= this.maxOps) this.emit();
        op = { kind: DeltaOpKind.LITERAL, basisOffset: 0, length: 0 };
        this.ops.push(op);
      }
      let lit = this.lit;
      if (lit === null || this.litLength === lit.length) lit = this.growLiterals(end - start);
      const n = Math.min(end - start, lit.length - this.litLength);
      lit.set(src.subarray(start, start + n), this.litLength);
      op.length += n;
      this.litLength += n;
      start += n;
      if (this.litLength === this.maxLiteral) this.emit();
    }
  }

  /**
   * Room for more literals: a first buffer sized to need, doubled up to maxLiteral; but once a
   * batch's literals reach LITERALS_FULL_AT, straight to maxLiteral. Long literal runs (an
   * unrelated file) used to fill a buffer just short of maxLiteral and then move it to a bigger
   * one: a second copy of every literal byte and an extra megabyte allocation per batch.
   */
  private growLiterals(need: number): Buffer {
    const old = this.lit;
    const want = this.litLength + need;
    const size = want >= LITERALS_FULL_AT ? this.maxLiteral : Math.min(this.maxLiteral, Math.max(64 * 1024, old === null ? want : old.length * 2, want));
    const lit = this.alloc(size);
    if (old !== null) old.copy(lit, 0, 0, this.litLength);
    this.lit = lit;
    return lit;
  }

  private copy(offset: number, length: number): void {
    this.stats.copyBytes += length;
    if (this.runLength > 0 && this.runOffset + this.runLength === offset && this.runLength + length <= MAX_COPY_OP) {
      this.runLength += length;
      return;
    }
    this.closeRun();
    this.runOffset = offset;
    this.runLength = length;
  }

  private closeRun(): void {
    if (this.runLength === 0) return;
    const length = this.runLength;
    this.runLength = 0;
    this.pushOp({ kind: DeltaOpKind.COPY, basisOffset: this.runOffset, length });
  }

  private pushOp(op: DeltaOp): void {
    if (this.ops.length >= this.maxOps) this.emit();
    this.ops.push(op);
  }

  private emit(): void {
    this.closeRun();
    if (this.ops.length === 0) return;
    this.out.push({ ops: this.ops, literals: this.lit === null ? EMPTY : this.lit.subarray(0, this.litLength) });
    this.ops = [];
    this.lit = null;
    this.litLength = 0;
  }

  private takeOut(): readonly DeltaBatch[] {
    if (this.out.length === 0) return NO_BATCHES;
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * End of the new file: decides the carried tail (it may end with the basis's short last
   * block), closes the last batch and digests the whole-file hash.
   */
  finish(): MatchResult {
    if (this.done) throw new SmartcopyError('SC_ERR_INTERNAL', 'Matcher.finish() called twice');
    this.done = true;
    const sig = this.sig;
    const tail = this.heap.subarray(this.dataAt, this.dataAt + this.carryLength);
    const shortLength = sig.basisSize - this.fullBlocks * this.B;
    let literalEnd = tail.length;
    if (shortLength > 0 && tail.length >= shortLength) {
      const at = tail.length - shortLength;
      const last = sig.blockCount - 1;
      const { sums, words } = this.kernel;
      sums(this.dataAt + at, this.dataAt + tail.length);
      const weak = (words[KERNEL_S2]! << 16) | (words[KERNEL_S1]! & 0xffff);
      if (weak === sig.weak[last]) {
        if (sameStrong(xxh64(tail.subarray(at), this.seed), 0, sig.strong, last * sig.strongLength, sig.strongLength)) {
          literalEnd = at;
          this.stats.matchedBlocks++;
        } else {
          this.stats.falseAlarms++;
        }
      }
    }
    this.literal(tail, 0, literalEnd);
    if (literalEnd < tail.length) this.copy((sig.blockCount - 1) * this.B, shortLength);
    this.carryLength = 0;
    this.emit();
    releaseKernel(this.kernel);
    const hash = this.hasher === null ? null : this.hasher.digest();
    return { batches: this.takeOut() as DeltaBatch[], hash, stats: { ...this.stats } };
  }
}

function sameStrong(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (a[aAt + k] !== b[bAt + k]) return false;
  return true;
}
