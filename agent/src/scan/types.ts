import type { FileMeta } from '../apply/types.js';

/** One entry of a tree listing, relative to the listed root. Paths are bytes, '/'-separated. */
export interface ScanEntry extends FileMeta {
  path: Buffer;
  type: number; // EntryType from the protocol schema
  linkTarget: Buffer | undefined;
  hash: Buffer | undefined;
}

/** An ordered include/exclude rule, rsync-style: the first rule that matches decides. */
export interface FilterRule {
  include: boolean;
  pattern: string;
}

export interface ScanOptions {
  /** ordered filter rules; excluded directories are not descended */
  rules?: readonly FilterRule[];
  /** files outside [minSize, maxSize] are left out (directories are always listed) */
  minSize?: number;
  maxSize?: number;
  /** compute a content hash of every regular file with this algorithm (--checksum) */
  hashAlgo?: string;
  /** hide smartcopy's own temporary files (*.sc-part) */
  hideParts?: boolean;
  /** only list the root itself, not its children */
  shallow?: boolean;
  /** when the root itself is a symlink, list what it points to (a local source) instead of the link (an agent's tree) */
  followRootLink?: boolean;
}

/** What a listing found at its root. */
export type RootKind = 'missing' | 'file' | 'directory' | 'symlink' | 'other';

export interface ScanResult {
  rootKind: RootKind;
  /** the root (path '') first when it exists, then every entry below it, parents before children */
  entries: ScanEntry[];
  /** entries that could not be read (permission denied, vanished) with the error text */
  errors: Array<{ path: Buffer; code: string; message: string }>;
}
