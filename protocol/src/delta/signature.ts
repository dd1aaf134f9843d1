import { ProtocolError, SmartcopyError } from '../errors.js';
import { xxh64 } from '../codec/hash.js';
import { KERNEL_FREE, KERNEL_S1, KERNEL_S2, createKernel, type Kernel } from './kernel.js';

/** Block size for basis files up to BLOCK_SIZE² bytes (rsync's BLOCK_SIZE). */
export const DEFAULT_BLOCK_SIZE = 700;
/** Largest block size chosen automatically (rsync's MAX_BLOCK_SIZE for protocol ≥ 30). */
export const MAX_AUTO_BLOCK_SIZE = 128 * 1024;
/** Largest block size accepted at all, from a caller override or from the wire. */
export const MAX_BLOCK_SIZE = 1024 * 1024;
/** Bounds of the truncated strong hash (xxh64 gives 8 bytes). */
export const MIN_STRONG_LENGTH = 2;
export const MAX_STRONG_LENGTH = 8;
/**
 * Most blocks one signature may have. The sender holds the whole signature in memory
 * (≈ 12–16 bytes a block), so a peer must not be able to make it allocate without bound;
 * files so large that 128 KiB blocks would exceed this get proportionally larger blocks.
 */
export const MAX_SIGNATURE_BLOCKS = 1 << 24;
/** rsync's BLOCKSUM_BIAS: log2 of the margin against a false block match. */
const BLOCKSUM_BIAS = 10;

let sumKernel: Kernel | undefined;

/** Weak sum of src[start, end) by the WebAssembly loop (a block is at most MAX_BLOCK_SIZE). */
function blockWeak(src: Uint8Array, start: number, end: number): number {
  const k = (sumKernel ??= createKernel(KERNEL_FREE + MAX_BLOCK_SIZE));
  k.heap.set(src.subarray(start, end), KERNEL_FREE);
  k.sums(KERNEL_FREE, KERNEL_FREE + end - start);
  return (k.words[KERNEL_S2]! << 16) | (k.words[KERNEL_S1]! & 0xffff);
}

/** The shape of one basis file's signature; these four numbers travel in the Signature header. */
export interface SignatureParams {
  readonly blockSize: number;
  readonly strongLength: number;
  readonly basisSize: number;
  readonly blockCount: number;
}

export interface SignatureOptions {
  /** Block size override (1..MAX_BLOCK_SIZE); default from the basis size, as rsync does. */
  blockSize?: number;
  /** Strong hash bytes per block override (2..8); default from basis and block size. */
  strongLength?: number;
}

function floorLog2(n: number): number {
  let b = 0;
  while (n >= 2) {
    n = Math.floor(n / 2);
    b++;
  }
  return b;
}

/**
 * rsync's `sum_sizes_sqroot` block size: 700 B up to 490,000 B of basis, above that the largest
 * multiple of 8 whose square fits in the length, capped at 128 KiB (and raised past that only
 * when the block count would exceed MAX_SIGNATURE_BLOCKS).
 */
export function chooseBlockSize(basisSize: number): number {
  if (basisSize <= DEFAULT_BLOCK_SIZE * DEFAULT_BLOCK_SIZE) return DEFAULT_BLOCK_SIZE;
  let c = 1;
  for (let l = Math.floor(basisSize / 4); l > 0; l = Math.floor(l / 4)) c *= 2;
  let b: number;
  if (c >= MAX_AUTO_BLOCK_SIZE) {
    b = MAX_AUTO_BLOCK_SIZE;
  } else {
    b = 0;
    do {
      b |= c;
      if (basisSize < b * b) b &= ~c;
      c >>= 1;
    } while (c >= 8);
    b = Math.max(b, DEFAULT_BLOCK_SIZE);
  }
  if (Math.ceil(basisSize / b) > MAX_SIGNATURE_BLOCKS) b = Math.ceil(basisSize / MAX_SIGNATURE_BLOCKS / 8) * 8;
  return b;
}

/**
 * rsync's strong-sum length (bits ≈ BIAS + 2·log2(len) − log2(block) − 32 weak bits) plus one
 * byte: a false match costs us a whole-file re-send, and a byte per block is cheap.
 */
export function chooseStrongLength(basisSize: number, blockSize: number): number {
  const bits = BLOCKSUM_BIAS + 2 * floorLog2(Math.max(1, basisSize)) - floorLog2(blockSize);
  const bytes = Math.trunc((bits + 1 - 32 + 7) / 8) + 1;
  return Math.min(MAX_STRONG_LENGTH, Math.max(MIN_STRONG_LENGTH, bytes));
}

function checkBlockSize(blockSize: number, what: string): void {
  if (!Number.isSafeInteger(blockSize) || blockSize < 1 || blockSize > MAX_BLOCK_SIZE) {
    throw new SmartcopyError('SC_ERR_USAGE', `${what}: block size ${blockSize} is outside 1..${MAX_BLOCK_SIZE}`);
  }
}

/** Signature shape for a basis of `basisSize` bytes. */
export function signatureParams(basisSize: number, opts: SignatureOptions = {}): SignatureParams {
  if (!Number.isSafeInteger(basisSize) || basisSize < 0) {
    throw new SmartcopyError('SC_ERR_INTERNAL', `signature of a basis of invalid size ${basisSize}`);
  }
  const blockSize = opts.blockSize ?? chooseBlockSize(basisSize);
  checkBlockSize(blockSize, 'delta signature');
  const strongLength = opts.strongLength ?? chooseStrongLength(basisSize, blockSize);
  if (!Number.isInteger(strongLength) || strongLength < MIN_STRONG_LENGTH || strongLength > MAX_STRONG_LENGTH) {
    throw new SmartcopyError('SC_ERR_USAGE', `delta signature: strong length ${strongLength} is outside ${MIN_STRONG_LENGTH}..${MAX_STRONG_LENGTH}`);
  }
  const blockCount = Math.ceil(basisSize / blockSize);
  if (blockCount > MAX_SIGNATURE_BLOCKS) {
    throw new SmartcopyError('SC_ERR_USAGE', `delta signature: ${blockCount} blocks of ${blockSize} B exceed ${MAX_SIGNATURE_BLOCKS}; use a larger block size`);
  }
  return Object.freeze({ blockSize, strongLength, basisSize, blockCount });
}

/** Bytes one block takes in a Signature payload: u32be weak sum, then the strong prefix. */
export function sumRecordSize(params: Pick<SignatureParams, 'strongLength'>): number {
  return 4 + params.strongLength;
}

/**
 * Check signature parameters that came from a peer. Everything the matcher later trusts is
 * checked here: block count consistent with size and block size, bounded allocation.
 */
export function validateSignatureParams(p: SignatureParams): void {
  const bad = (why: string): never => {
    throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta signature: ${why}`);
  };
  if (!Number.isSafeInteger(p.blockSize) || p.blockSize < 1 || p.blockSize > MAX_BLOCK_SIZE) bad(`block size ${p.blockSize}`);
  if (!Number.isInteger(p.strongLength) || p.strongLength < MIN_STRONG_LENGTH || p.strongLength > MAX_STRONG_LENGTH) {
    bad(`strong length ${p.strongLength}`);
  }
  if (!Number.isSafeInteger(p.basisSize) || p.basisSize < 0) bad(`basis size ${p.basisSize}`);
  const expected = Math.ceil(p.basisSize / p.blockSize);
  if (expected > MAX_SIGNATURE_BLOCKS) bad(`${expected} blocks exceed ${MAX_SIGNATURE_BLOCKS}`);
  if (p.blockCount !== expected) bad(`block count ${p.blockCount} for ${p.basisSize} B in ${p.blockSize} B blocks (expected ${expected})`);
}

/**
 * Builds a basis file's signature from its bytes fed in pieces of any size. Completed block
 * sums accumulate as packed records (the Signature payload format) until `takeSums()`; nothing
 * but one partial block is ever buffered.
 */
export class SignatureBuilder {
  readonly params: SignatureParams;
  private readonly seed: bigint;
  private readonly record: number;
  /** a block that straddles `update()` pieces is gathered here */
  private readonly partial: Uint8Array;
  private partialLength = 0;
  private fed = 0;
  private blocks = 0;
  private out: Buffer;
  private outLength = 0;
  private finished = false;

  /** `seed`: the session's strong-hash seed, the same on both sides. */
  constructor(basisSize: number, seed: bigint | number, opts: SignatureOptions = {}) {
    this.params = signatureParams(basisSize, opts);
    this.seed = BigInt(seed);
    this.record = sumRecordSize(this.params);
    this.partial = new Uint8Array(Math.min(this.params.blockSize, basisSize));
    this.out = Buffer.allocUnsafe(this.record * Math.min(this.params.blockCount, 256));
  }

  /** Blocks summed so far. */
  get blocksDone(): number {
    return this.blocks;
  }

  /** Bytes of the basis fed so far. */
  get bytesFed(): number {
    return this.fed;
  }

  /** Feed the next bytes of the basis file. */
  update(data: Uint8Array): this {
    if (this.finished) throw new SmartcopyError('SC_ERR_INTERNAL', 'SignatureBuilder.update() after finish()');
    const { blockSize, basisSize } = this.params;
    if (this.fed + data.length > basisSize) {
      throw new SmartcopyError('SC_ERR_IO', `basis file grew past ${basisSize} B while its signature was computed`, { retryable: true });
    }
    this.fed += data.length;
    const partial = this.partial;
    let at = 0;
    while (at < data.length) {
      // only the basis's last block may be shorter than blockSize
      const need = Math.min(blockSize, basisSize - this.blocks * blockSize);
      if (this.partialLength === 0 && data.length - at >= need) {
        this.sum(data, at, at + need);
        at += need;
        continue;
      }
      const n = Math.min(data.length - at, need - this.partialLength);
      partial.set(data.subarray(at, at + n), this.partialLength);
      this.partialLength += n;
      at += n;
      if (this.partialLength === need) {
        this.sum(partial, 0, need);
        this.partialLength = 0;
      }
    }
    return this;
  }

  private sum(src: Uint8Array, start: number, end: number): void {
    const rec = this.record;
    if (this.outLength + rec > this.out.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.out.length * 2, rec * 64));
      this.out.copy(grown, 0, 0, this.outLength);
      this.out = grown;
    }
    const o = this.outLength;
    this.out.writeInt32BE(blockWeak(src, start, end), o);
    xxh64(src.subarray(start, end), this.seed).copy(this.out, o + 4, 0, rec - 4);
    this.outLength += rec;
    this.blocks++;
  }

  /** Packed sums of the blocks completed since the last call (Signature payload format). */
  takeSums(): Buffer {
    const sums = Buffer.from(this.out.subarray(0, this.outLength));
    this.outLength = 0;
    return sums;
  }

  /**
   * End of the basis: returns the sums not yet taken. Throws when fewer bytes arrived than the
   * size the signature was sized for (the file shrank while it was read).
   */
  finish(): Buffer {
    if (this.finished) throw new SmartcopyError('SC_ERR_INTERNAL', 'SignatureBuilder.finish() called twice');
    if (this.fed !== this.params.basisSize) {
      throw new SmartcopyError('SC_ERR_IO', `basis file shrank to ${this.fed} B (expected ${this.params.basisSize} B) while its signature was computed`, { retryable: true });
    }
    this.finished = true;
    return this.takeSums();
  }
}

/**
 * A whole signature in memory, as the sender needs it to match: weak sums and strong prefixes
 * per block, filled from packed records (from a SignatureBuilder or from Signature frames).
 */
export class BasisSignature implements SignatureParams {
  readonly blockSize: number;
  readonly strongLength: number;
  readonly basisSize: number;
  readonly blockCount: number;
  readonly weak: Int32Array;
  /** blockCount × strongLength bytes */
  readonly strong: Uint8Array;
  private filled = 0;

  /** `params` are checked as if they came from a peer (ProtocolError when inconsistent). */
  constructor(params: SignatureParams) {
    validateSignatureParams(params);
    this.blockSize = params.blockSize;
    this.strongLength = params.strongLength;
    this.basisSize = params.basisSize;
    this.blockCount = params.blockCount;
    this.weak = new Int32Array(this.blockCount);
    this.strong = new Uint8Array(this.blockCount * this.strongLength);
  }

  /** Blocks received so far. */
  get received(): number {
    return this.filled;
  }

  get complete(): boolean {
    return this.filled === this.blockCount;
  }

  /** Length of block `i` (only the last one may be short). */
  blockLength(i: number): number {
    return i === this.blockCount - 1 ? this.basisSize - i * this.blockSize : this.blockSize;
  }

  /** Append packed sum records (whole records only; not beyond blockCount). */
  addSums(packed: Uint8Array): this {
    const rec = 4 + this.strongLength;
    if (packed.length % rec !== 0) {
      throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta signature: ${packed.length} B of sums is not a whole number of ${rec} B records`);
    }
    const n = packed.length / rec;
    if (this.filled + n > this.blockCount) {
      throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta signature: more than the ${this.blockCount} announced blocks`);
    }
    const sl = this.strongLength;
    for (let k = 0, at = 0; k < n; k++, at += rec) {
      const b = this.filled + k;
      this.weak[b] = (packed[at]! << 24) | (packed[at + 1]! << 16) | (packed[at + 2]! << 8) | packed[at + 3]!;
      this.strong.set(packed.subarray(at + 4, at + rec), b * sl);
    }
    this.filled += n;
    return this;
  }

  /** The packed records of blocks [from, to) (Signature payload format). */
  packSums(from = 0, to = this.filled): Buffer {
    const rec = 4 + this.strongLength;
    const sl = this.strongLength;
    const out = Buffer.allocUnsafe((to - from) * rec);
    for (let b = from, at = 0; b < to; b++, at += rec) {
      out.writeInt32BE(this.weak[b]!, at);
      out.set(this.strong.subarray(b * sl, b * sl + sl), at + 4);
    }
    return out;
  }
}

/** Signature of a basis held in memory (tests, small files, same-host use). */
export function computeSignature(basis: Uint8Array, seed: bigint | number, opts: SignatureOptions = {}): BasisSignature {
  const builder = new SignatureBuilder(basis.length, seed, opts);
  builder.update(basis);
  return new BasisSignature(builder.params).addSums(builder.finish());
}
