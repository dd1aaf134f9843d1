import fs from 'node:fs';
import { SmartcopyError } from '@smartcopy/protocol';
import { sharedPool, type BufferPool } from '../util/buffer-pool.js';
import { closeFd, closeQuietly, openFd, readAt, unlinkIfExists, writeFullAt } from '../util/fs-async.js';

/** Reads/writes in flight per copy: 2 keeps the disk busy while the other buffer is written. */
const LANES = 2;

/**
 * Copy [offset, offset+length) of `srcFd` to the same range of `dstFd` with positional
 * pool-sized reads and writes, LANES in flight. A source shorter than the range is an error
 * (SC_ERR_VANISHED: it shrank while we copied).
 */
export async function copyRange(srcFd: number, dstFd: number, offset: number, length: number, pool: BufferPool = sharedPool()): Promise<void> {
  const copied = await copyLanes(srcFd, dstFd, offset, offset + length, pool);
  if (copied < length) {
    throw new SmartcopyError('SC_ERR_VANISHED', `the source ended after ${offset + copied} bytes, before ${offset + length}; it changed during the copy`, { retryable: true });
  }
}

/** Copy from `offset` to `end` (or to EOF when `end` is Infinity); returns the bytes copied. */
async function copyLanes(srcFd: number, dstFd: number, offset: number, end: number, pool: BufferPool): Promise<number> {
  let next = offset;
  let eof = false;
  let copied = 0;
  const lane = async (): Promise<void> => {
    const buf = pool.acquire();
    try {
      while (!eof && next < end) {
        const pos = next;
        const want = Math.min(buf.length, end - pos);
        next += want;
        let got = 0;
        while (got < want) {
          const n = await readAt(srcFd, buf, got, want - got, pos + got);
          if (n === 0) {
            eof = true;
            break;
          }
          got += n;
        }
        if (got > 0) await writeFullAt(dstFd, buf, 0, got, pos);
        copied += got;
      }
    } finally {
      pool.release(buf);
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < LANES; i++) lanes.push(lane());
  // allSettled first: no lane may still hold or write a buffer when the caller gets control
  const results = await Promise.allSettled(lanes);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return copied;
}

/**
 * Whole-file copy by reading and writing in user space: the fallback when the kernel cannot
 * copy. Copies to EOF (a file that grew is copied whole). With `fresh`, anything at `dst` is
 * removed first and the file is created with O_EXCL, never following a planted symlink.
 */
export async function copyByReadWrite(src: Buffer | string, dst: Buffer | string, opts: { fresh?: boolean }, pool: BufferPool = sharedPool()): Promise<void> {
  const c = fs.constants;
  const srcFd = await openFd(src, c.O_RDONLY);
  let dstFd = -1;
  try {
    const mode = (await new Promise<fs.Stats>((res, rej) => fs.fstat(srcFd, (e, st) => (e ? rej(e) : res(st))))).mode & 0o7777;
    if (opts.fresh) await unlinkIfExists(dst);
    dstFd = await openFd(dst, c.O_WRONLY | c.O_CREAT | (opts.fresh ? c.O_EXCL : c.O_TRUNC), mode);
    await copyLanes(srcFd, dstFd, 0, Infinity, pool);
    const fd = dstFd;
    dstFd = -1;
    await closeFd(fd);
  } catch (e) {
    if (dstFd >= 0) {
      await closeQuietly(dstFd);
      await unlinkIfExists(dst).catch(() => {});
    }
    throw e;
  } finally {
    await closeQuietly(srcFd);
  }
}
