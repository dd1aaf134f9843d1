import { kernelCopy } from './kernel-copy.js';
import type { NativeCopier } from './types.js';

/*
 * Other platforms: a plain fs.copyFile (CopyFileW on Windows, copy_file_range on FreeBSD 13+
 * inside libuv). No reflink request, which some of them reject outright.
 */
const CANT = new Set(['EXDEV', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS']);

export const fallbackCopier: NativeCopier = {
  name: 'copyfile',
  copy: (src, dst, opts) => kernelCopy(src, dst, 0, CANT, opts),
};
