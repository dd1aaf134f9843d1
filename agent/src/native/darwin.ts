import fs from 'node:fs';
import { kernelCopy } from './kernel-copy.js';
import type { NativeCopier } from './types.js';

/*
 * On macOS libuv maps COPYFILE_FICLONE to copyfile(3) with COPYFILE_CLONE: an APFS clone when
 * source and destination share a volume, a data copy otherwise. ENOTSUP comes back from
 * volumes (SMB, FAT) where copyfile cannot do either.
 */
const CANT = new Set(['EXDEV', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS']);

export const darwinCopier: NativeCopier = {
  name: 'darwin-clonefile',
  copy: (src, dst, opts) => kernelCopy(src, dst, fs.constants.COPYFILE_FICLONE, CANT, opts),
};
