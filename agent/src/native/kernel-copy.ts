import fs from 'node:fs';
import { errnoOf } from '../util/fs-async.js';
import { CantNativeCopy, type NativeCopyOptions } from './types.js';

/**
 * fs.copyFile with the given libuv flags; errno codes in `cantCodes` mean "this pair cannot be
 * copied by the kernel" and become CantNativeCopy. On failure libuv removes the destination it
 * created, so the caller can retry another way at the same name.
 */
export function kernelCopy(
  src: Buffer | string,
  dst: Buffer | string,
  baseFlags: number,
  cantCodes: ReadonlySet<string>,
  opts: NativeCopyOptions,
): Promise<void | CantNativeCopy> {
  const flags = baseFlags | (opts.fresh ? fs.constants.COPYFILE_EXCL : 0);
  return new Promise((resolve, reject) => {
    fs.copyFile(src, dst, flags, (err) => {
      if (!err) resolve();
      else if (cantCodes.has(errnoOf(err) ?? '')) resolve(CantNativeCopy);
      else reject(err);
    });
  });
}
