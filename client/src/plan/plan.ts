import { EntryType, type Entry } from '@smartcopy/protocol';
import type { ScanEntry } from '@smartcopy/agent';
import type { Order } from '../config.js';

/** A source entry and where it goes. */
export interface SourceItem {
  entry: ScanEntry;
  /** absolute source path (local side) or the path under the agent root (remote side) */
  src: Buffer;
  /** path under the receiver's root */
  dest: Buffer;
  /** for messages and --json */
  display: string;
  /** size of the file already at the destination (a delta basis), when there is one */
  basisSize?: number;
}

export interface PlanOptions {
  incremental: boolean;
  checksum: boolean;
  deleteExtra: boolean;
  order: Order;
  /** destination entries this returns true for are never deleted (excluded by filters or size) */
  protect: (destRelToRoot: string, e: Entry) => boolean;
  /** one side keeps modification times in whole seconds only (SFTP): compare whole seconds */
  wholeSecondMtime?: boolean;
}

export interface DeleteOp {
  dest: Buffer;
  type: number;
  display: string;
  /** removed because the source has a different type there, not because of --delete-extra */
  typeChange: boolean;
}

/** The work a run will do, by kind, in the order it will be done. */
export interface Plan {
  deletes: DeleteOp[];
  mkdirs: SourceItem[];
  files: SourceItem[];
  symlinks: SourceItem[];
  /** source directories, deepest first: mode and mtime are set once their contents are in */
  dirMeta: SourceItem[];
  skipped: SourceItem[];
  /** entries that cannot be copied (devices, fifos, sockets) */
  unsupported: SourceItem[];
}

export function keyOf(p: Uint8Array): string {
  return Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString('latin1');
}

/** mtimes are set through a double (sub-µs precision), so compare to the microsecond. */
export function sameMtime(a: { mtimeSec: number; mtimeNsec: number }, b: { mtimeSec: number; mtimeNsec: number }): boolean {
  return Math.abs((a.mtimeSec - b.mtimeSec) * 1e9 + (a.mtimeNsec - b.mtimeNsec)) < 1000;
}

function sameTime(a: { mtimeSec: number; mtimeNsec: number }, b: { mtimeSec: number; mtimeNsec: number }, opts: PlanOptions): boolean {
  return opts.wholeSecondMtime ? a.mtimeSec === b.mtimeSec : sameMtime(a, b);
}

function unchanged(src: ScanEntry, dst: Entry, opts: PlanOptions): boolean {
  if (src.type !== dst.type) return false;
  if (src.type === EntryType.SYMLINK) return Buffer.compare(src.linkTarget ?? Buffer.alloc(0), dst.linkTarget) === 0;
  if (src.type !== EntryType.FILE || src.size !== dst.size) return false;
  if (opts.checksum) return src.hash !== undefined && dst.hash.length > 0 && Buffer.compare(src.hash, dst.hash) === 0;
  if (opts.incremental) return sameTime(src, dst, opts);
  return false;
}

/**
 * Compare the source listing with the destination listing (keyed by destination path) and
 * decide what to do with every entry. Pure: no I/O.
 */
export function makePlan(items: readonly SourceItem[], dest: ReadonlyMap<string, Entry>, destRoot: Buffer, opts: PlanOptions): Plan {
  const plan: Plan = { deletes: [], mkdirs: [], files: [], symlinks: [], dirMeta: [], skipped: [], unsupported: [] };
  const srcKeys = new Set<string>();
  for (const it of items) {
    const key = keyOf(it.dest);
    srcKeys.add(key);
    const d = dest.get(key);
    // Another type in the way (a file where a directory goes, a directory where a link goes):
    // it is removed first, like rsync does, whether or not --delete-extra is given.
    if (d && d.type !== it.entry.type && (d.type === EntryType.DIRECTORY || it.entry.type === EntryType.DIRECTORY || d.type === EntryType.OTHER)) {
      plan.deletes.push({ dest: it.dest, type: d.type, display: it.display, typeChange: true });
    }
    switch (it.entry.type) {
      case EntryType.DIRECTORY:
        if (!d || d.type !== EntryType.DIRECTORY) plan.mkdirs.push(it);
        plan.dirMeta.push(it);
        break;
      case EntryType.FILE:
        if (d && unchanged(it.entry, d, opts)) plan.skipped.push(it);
        else plan.files.push(d && d.type === EntryType.FILE ? { ...it, basisSize: d.size } : it);
        break;
      case EntryType.SYMLINK:
        if (d && (opts.incremental || opts.checksum) && unchanged(it.entry, d, opts)) plan.skipped.push(it);
        else plan.symlinks.push(it);
        break;
      default:
        plan.unsupported.push(it);
    }
  }
  if (opts.deleteExtra) {
    const deletedDirs = new Set<string>();
    const rootKey = keyOf(destRoot);
    for (const [key, d] of dest) {
      if (srcKeys.has(key) || key === rootKey) continue;
      const slash = key.lastIndexOf('/');
      const parent = slash < 0 ? '' : key.slice(0, slash);
      if (deletedDirs.has(parent)) {
        if (d.type === EntryType.DIRECTORY) deletedDirs.add(key);
        continue;
      }
      const rel = rootKey === '' ? key : key.slice(rootKey.length + 1);
      if (opts.protect(Buffer.from(rel, 'latin1').toString('utf8'), d)) continue;
      if (d.type === EntryType.DIRECTORY) deletedDirs.add(key);
      const p = Buffer.from(key, 'latin1');
      plan.deletes.push({ dest: p, type: d.type, display: p.toString('utf8'), typeChange: false });
    }
  }
  // Directory metadata is set only where it is wrong or about to change: a directory whose
  // mode or mtime differ, or one that gains, loses or replaces an entry in this run (which
  // moves its mtime). A no-change re-sync touches nothing.
  const touched = new Set<string>();
  const parentOf = (p: Uint8Array): string => {
    const k = keyOf(p);
    const i = k.lastIndexOf('/');
    return i < 0 ? '' : k.slice(0, i);
  };
  for (const list of [plan.files, plan.symlinks, plan.mkdirs]) for (const it of list) touched.add(parentOf(it.dest));
  for (const d of plan.deletes) touched.add(parentOf(d.dest));
  plan.dirMeta = plan.dirMeta.filter((it) => {
    const key = keyOf(it.dest);
    const d = dest.get(key);
    if (!d || d.type !== EntryType.DIRECTORY || touched.has(key)) return true;
    return d.mode !== it.entry.mode || !sameTime(d, it.entry, opts);
  });
  plan.dirMeta.reverse();
  if (opts.order === 'largest-first') plan.files.sort((a, b) => b.entry.size - a.entry.size);
  else if (opts.order === 'smallest-first') plan.files.sort((a, b) => a.entry.size - b.entry.size);
  return plan;
}
