import { unlinkIfExists } from '../util/fs-async.js';
import { copyByReadWrite } from './copy-range.js';
import { darwinCopier } from './darwin.js';
import { fallbackCopier } from './fallback.js';
import { linuxCopier } from './linux.js';
import { CantNativeCopy, type NativeCopier, type NativeCopyOptions } from './types.js';

export { CantNativeCopy, type NativeCopier, type NativeCopyOptions } from './types.js';
export { copyRange, copyByReadWrite } from './copy-range.js';

/** The kernel copier for this platform. */
export const platformCopier: NativeCopier =
  process.platform === 'linux' ? linuxCopier : process.platform === 'darwin' ? darwinCopier : fallbackCopier;

/**
 * Copy a whole file: the kernel's way (reflink, copy_file_range, clonefile) when it can, else a
 * read/write loop with pooled 1 MiB buffers. The destination gets the source's permission bits.
 */
export async function nativeCopyFile(src: Buffer | string, dst: Buffer | string, opts: NativeCopyOptions = {}, copier: NativeCopier = platformCopier): Promise<void> {
  if (opts.fresh) await unlinkIfExists(dst);
  const r = await copier.copy(src, dst, opts);
  if (r === CantNativeCopy) await copyByReadWrite(src, dst, opts);
}
