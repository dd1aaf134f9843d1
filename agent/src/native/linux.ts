import fs from 'node:fs';
import { kernelCopy } from './kernel-copy.js';
import type { NativeCopier } from './types.js';

/*
 * COPYFILE_FICLONE asks for a reflink (btrfs, XFS, bcachefs: instant, shares extents) and lets
 * libuv fall back to copy_file_range/sendfile inside the kernel when the file system has none.
 * The errors below only surface when even those are refused for this pair of files.
 */
const CANT = new Set(['EXDEV', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS']);

export const linuxCopier: NativeCopier = {
  name: 'linux-copy_file_range',
  copy: (src, dst, opts) => kernelCopy(src, dst, fs.constants.COPYFILE_FICLONE, CANT, opts),
};
