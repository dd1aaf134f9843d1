import type { HashAlgo } from '@smartcopy/protocol';

/** What the receiver applies to a file besides its content. */
export interface FileMeta {
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** st_mode; only the permission bits (& 0o7777) are applied */
  mode: number;
  uid: number;
  gid: number;
}

/** Re-read what was written and compare its whole-file hash before making it visible. */
export interface VerifySpec {
  algo: HashAlgo;
  expected: Uint8Array;
}

export interface ApplierOptions {
  /** fsync files (and their directory after the rename) before reporting them done */
  fsync: boolean;
  /** chown to meta.uid/gid (needs root) */
  preserveOwner: boolean;
}

/** mtime as the double-precision seconds fs.futimes takes (sub-µs resolution at today's dates). */
export function mtimeOf(meta: FileMeta): number {
  return meta.mtimeSec + meta.mtimeNsec / 1e9;
}
