import fs from 'node:fs';
import { SmartcopyError, type HashAlgo } from '@smartcopy/protocol';
import { closeFd, errnoOf } from '../util/fs-async.js';
import { hashFd } from '../verify/hash-file.js';
import { mtimeOf, type FileMeta, type VerifySpec } from './types.js';

function cb<T = void>(fn: (done: (err: NodeJS.ErrnoException | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

export const fsyncFd = (fd: number): Promise<void> => cb((d) => fs.fsync(fd, d));
export const fdatasyncFd = (fd: number): Promise<void> => cb((d) => fs.fdatasync(fd, d));
export const ftruncateFd = (fd: number, len: number): Promise<void> => cb((d) => fs.ftruncate(fd, len, d));

/** Compare the hash of what is on disk under `fd` with the sender's; throws on mismatch. */
export async function verifyFd(fd: number, spec: VerifySpec, display: string): Promise<void> {
  const got = await hashFd(fd, spec.algo as HashAlgo);
  const want = Buffer.from(spec.expected.buffer, spec.expected.byteOffset, spec.expected.byteLength);
  if (!got.equals(want)) {
    throw new SmartcopyError(
      'SC_ERR_CHECKSUM_MISMATCH',
      `${JSON.stringify(display)}: ${spec.algo} of the written file is ${got.toString('hex')}, the sender's is ${want.toString('hex')}; the file was not replaced`,
      { path: display, retryable: true },
    );
  }
}

/** Size check before a commit: a part of the wrong length never becomes visible. */
export async function checkSize(fd: number, meta: FileMeta, display: string): Promise<void> {
  const st = await cb<fs.Stats>((d) => fs.fstat(fd, d));
  if (st.size !== meta.size) {
    throw new SmartcopyError(
      'SC_ERR_CHECKSUM_MISMATCH',
      `${JSON.stringify(display)}: ${st.size} bytes were written, the file has ${meta.size}; the file was not replaced`,
      { path: display, retryable: true },
    );
  }
}

/**
 * Owner, mode and times on the open part, close it, then rename it onto the final name.
 * The fd is closed whatever happens. Returns true when a directory at the final name was
 * removed (a type change), so the caller can drop it from the jail's cache.
 */
export async function finalizeFd(fd: number, part: Buffer, final: Buffer, meta: FileMeta, opts: { chown: boolean; fsyncDir: boolean }): Promise<boolean> {
  try {
    // chown before chmod: chown clears set-id bits
    if (opts.chown) await cb((d) => fs.fchown(fd, meta.uid, meta.gid, d));
    await cb((d) => fs.fchmod(fd, meta.mode & 0o7777, d));
    await cb((d) => fs.futimes(fd, Date.now() / 1000, mtimeOf(meta), d));
  } catch (e) {
    await closeFd(fd).catch(() => {});
    throw e;
  }
  await closeFd(fd);
  const removedDir = await renameReplacing(part, final);
  if (opts.fsyncDir) await fsyncParentDir(final);
  return removedDir;
}

/** rename(part, final), replacing a directory at `final` (type change). True if one was removed. */
export async function renameReplacing(part: Buffer, final: Buffer): Promise<boolean> {
  try {
    await fs.promises.rename(part, final);
    return false;
  } catch (e) {
    const code = errnoOf(e);
    if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    const st = await fs.promises.lstat(final);
    if (!st.isDirectory()) throw e;
    await fs.promises.rm(final, { recursive: true, force: true });
    await fs.promises.rename(part, final);
    return true;
  }
}

/** fsync the directory holding `p`, so a rename into it survives a crash. */
export async function fsyncParentDir(p: Buffer): Promise<void> {
  const i = p.lastIndexOf(0x2f);
  const dir = p.subarray(0, Math.max(1, i));
  const fd = await cb<number>((d) => fs.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, d));
  try {
    await fsyncFd(fd);
  } catch (e) {
    const code = errnoOf(e);
    // some file systems cannot fsync a directory; the file itself was synced
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw e;
  } finally {
    await closeFd(fd).catch(() => {});
  }
}
