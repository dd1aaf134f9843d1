import type { ScanEntry } from './types.js';

/**
 * Listings cross from the walk worker to the main thread as packed batches (two transferable
 * buffers) instead of structured-cloned objects: cloning 20,000 small Buffers costs more than the
 * walk itself.
 */
export interface PackedBatch {
  count: number;
  nums: Float64Array;
  bytes: Uint8Array;
}

const FIELDS = 12; // type size sec nsec mode uid gid pathLen linkLen(-1 = none) hashLen(-1) pad pad

export class BatchPacker {
  private nums: Float64Array;
  private bytes: Buffer;
  private count = 0;
  private used = 0;

  constructor(private readonly capacity = 2048) {
    this.nums = new Float64Array(capacity * FIELDS);
    this.bytes = Buffer.allocUnsafe(capacity * 64);
  }

  get length(): number {
    return this.count;
  }

  add(e: ScanEntry): boolean {
    const extra = e.path.length + (e.linkTarget?.length ?? 0) + (e.hash?.length ?? 0);
    if (this.used + extra > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + extra));
      this.bytes.copy(grown, 0, 0, this.used);
      this.bytes = grown;
    }
    const o = this.count * FIELDS;
    const n = this.nums;
    n[o] = e.type;
    n[o + 1] = e.size;
    n[o + 2] = e.mtimeSec;
    n[o + 3] = e.mtimeNsec;
    n[o + 4] = e.mode;
    n[o + 5] = e.uid;
    n[o + 6] = e.gid;
    n[o + 7] = e.path.length;
    n[o + 8] = e.linkTarget ? e.linkTarget.length : -1;
    n[o + 9] = e.hash ? e.hash.length : -1;
    this.used += e.path.copy(this.bytes, this.used);
    if (e.linkTarget) this.used += e.linkTarget.copy(this.bytes, this.used);
    if (e.hash) this.used += e.hash.copy(this.bytes, this.used);
    this.count++;
    return this.count >= this.capacity;
  }

  /** Hand the batch over (the packer starts a fresh one). */
  take(): PackedBatch {
    const batch: PackedBatch = {
      count: this.count,
      nums: this.nums.slice(0, this.count * FIELDS),
      bytes: new Uint8Array(this.bytes.buffer.slice(this.bytes.byteOffset, this.bytes.byteOffset + this.used)),
    };
    this.count = 0;
    this.used = 0;
    return batch;
  }
}

export function unpackBatch(batch: PackedBatch, out: ScanEntry[]): void {
  const bytes = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
  const n = batch.nums;
  let pos = 0;
  for (let i = 0; i < batch.count; i++) {
    const o = i * FIELDS;
    const pathLen = n[o + 7]!;
    const linkLen = n[o + 8]!;
    const hashLen = n[o + 9]!;
    const path = bytes.subarray(pos, pos + pathLen);
    pos += pathLen;
    let linkTarget: Buffer | undefined;
    if (linkLen >= 0) {
      linkTarget = bytes.subarray(pos, pos + linkLen);
      pos += linkLen;
    }
    let hash: Buffer | undefined;
    if (hashLen >= 0) {
      hash = bytes.subarray(pos, pos + hashLen);
      pos += hashLen;
    }
    out.push({
      path,
      type: n[o]!,
      size: n[o + 1]!,
      mtimeSec: n[o + 2]!,
      mtimeNsec: n[o + 3]!,
      mode: n[o + 4]!,
      uid: n[o + 5]!,
      gid: n[o + 6]!,
      linkTarget,
      hash,
    });
  }
}
