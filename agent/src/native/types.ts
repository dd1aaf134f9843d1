/**
 * Returned (never thrown) by a platform copier when the kernel cannot copy this pair of files
 * (different file systems, no reflink or copy_file_range support): the caller falls back to a
 * read/write loop. Real failures (ENOENT, EACCES, ENOSPC...) are thrown as usual.
 */
export const CantNativeCopy: unique symbol = Symbol('CantNativeCopy');
export type CantNativeCopy = typeof CantNativeCopy;

export interface NativeCopyOptions {
  /**
   * `dst` is a temporary name we own: whatever is there is removed, and the file is created
   * with O_EXCL, so a symlink planted at that name is replaced, never written through.
   */
  fresh?: boolean;
}

/** One platform's whole-file kernel copy. */
export interface NativeCopier {
  readonly name: string;
  copy(src: Buffer | string, dst: Buffer | string, opts: NativeCopyOptions): Promise<void | CantNativeCopy>;
}
