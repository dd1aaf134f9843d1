import fs from 'node:fs';
import { SmartcopyError, createHasher, type HashAlgo } from '@smartcopy/protocol';
import { sharedPool, type BufferPool } from '../util/buffer-pool.js';
import { closeQuietly, openFd, readAt } from '../util/fs-async.js';

export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * Hash a file, or `range` of it, reading with two pooled buffers so the next read is in flight
 * while the previous buffer is hashed. A file shorter than `range` raises SC_ERR_VANISHED.
 */
export async function hashFile(path: Buffer | string, algo: HashAlgo, range?: ByteRange, pool: BufferPool = sharedPool()): Promise<Buffer> {
  const fd = await openFd(path, fs.constants.O_RDONLY);
  try {
    return await hashFd(fd, algo, range, pool);
  } finally {
    await closeQuietly(fd);
  }
}

/** `hashFile` over an open fd (positional reads; the fd's offset is not used or moved). */
export async function hashFd(fd: number, algo: HashAlgo, range?: ByteRange, pool: BufferPool = sharedPool()): Promise<Buffer> {
  const hasher = await createHasher(algo);
  const start = range?.offset ?? 0;
  const end = range ? start + range.length : Infinity;
  let pos = start;
  let cur = pool.acquire();
  let spare = pool.acquire();
  let pending: Promise<number> | undefined;
  const readNext = (into: Buffer): Promise<number> =>
    pos < end ? readAt(fd, into, 0, Math.min(into.length, end - pos), pos) : Promise.resolve(0);
  try {
    pending = readNext(cur);
    for (;;) {
      const n = await pending;
      pending = undefined;
      if (n === 0) break;
      pos += n;
      const full = cur;
      cur = spare;
      spare = full;
      pending = readNext(cur);
      hasher.update(full.subarray(0, n));
    }
  } finally {
    // a read may still be filling `cur` when hashing failed: let it land before reuse
    if (pending) await pending.catch(() => 0);
    pool.release(cur);
    pool.release(spare);
  }
  if (range && pos < end) {
    hasher.digest();
    throw new SmartcopyError('SC_ERR_VANISHED', `the file ends at ${pos}, before the end of the range ${start}+${range.length}; it changed`, { retryable: true });
  }
  return hasher.digest();
}
