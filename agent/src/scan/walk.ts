import fs from 'node:fs';
// The schema's constants only: a walk worker must not pay for loading the protocol codecs.
import { EntryType } from '@smartcopy/protocol/schema/messages';
import { compileRules } from './filter.js';
import type { RootKind, ScanEntry, ScanOptions } from './types.js';

const SLASH = 0x2f;
const PART_SUFFIX = Buffer.from('.sc-part');
const PART_LOG_SUFFIX = Buffer.from('.sc-part.chunks');

/** True for smartcopy's own temporary names, which listings hide. */
export function isTempName(name: Buffer): boolean {
  return (
    name[0] === 0x2e &&
    (endsWith(name, PART_SUFFIX) || endsWith(name, PART_LOG_SUFFIX))
  );
}

function endsWith(b: Buffer, suffix: Buffer): boolean {
  return b.length >= suffix.length && b.compare(suffix, 0, suffix.length, b.length - suffix.length) === 0;
}

export function typeOf(st: fs.Stats): number {
  if (st.isFile()) return EntryType.FILE;
  if (st.isDirectory()) return EntryType.DIRECTORY;
  if (st.isSymbolicLink()) return EntryType.SYMLINK;
  return EntryType.OTHER;
}

export function entryFromStat(rel: Buffer, st: fs.Stats, linkTarget?: Buffer): ScanEntry {
  // mtimeMs is a double (sub-µs precision at today's dates); split into sec + nsec.
  const ms = st.mtimeMs;
  const sec = Math.floor(ms / 1000);
  const nsec = Math.min(999_999_999, Math.max(0, Math.round((ms - sec * 1000) * 1e6)));
  const type = typeOf(st);
  return {
    path: rel,
    type,
    size: type === EntryType.FILE ? st.size : 0,
    mtimeSec: sec,
    mtimeNsec: nsec,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    linkTarget,
    hash: undefined,
  };
}

export function rootKindOf(type: number): RootKind {
  switch (type) {
    case EntryType.FILE: return 'file';
    case EntryType.DIRECTORY: return 'directory';
    case EntryType.SYMLINK: return 'symlink';
    default: return 'other';
  }
}

export interface WalkSink {
  entry(e: ScanEntry): void;
  error(path: Buffer, code: string, message: string): void;
}

/**
 * Depth-first walk with blocking syscalls, resumable in slices: `step(n)` lists directories until
 * about n entries were emitted. Blocking calls are the cheapest way to issue tens of thousands of
 * small syscalls (a promise per lstat costs more than the lstat); slicing keeps an agent that
 * serves other sessions responsive. Parents are emitted before children.
 */
export class TreeWalker {
  private readonly stack: Buffer[] = [];
  private readonly filter;
  private readonly filtering: boolean;
  private readonly hideParts: boolean;
  private readonly slash = Buffer.from('/');
  /** what the root is; set by start() */
  kind: RootKind = 'missing';

  constructor(
    private readonly root: Buffer,
    private readonly opts: ScanOptions,
    private readonly sink: WalkSink,
  ) {
    this.filter = compileRules(opts.rules ?? []);
    this.filtering = (opts.rules?.length ?? 0) > 0;
    this.hideParts = opts.hideParts ?? true;
  }

  /** Look at the root; returns true when there is a directory to walk. */
  start(): boolean {
    const { root, opts, sink } = this;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(root);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') {
        this.kind = 'missing';
        return false;
      }
      sink.error(Buffer.alloc(0), err.code ?? 'EIO', err.message);
      this.kind = 'other';
      return false;
    }
    // A symlink given as the root itself is followed (like `rsync -a link/ dst`) when asked.
    if (st.isSymbolicLink() && opts.followRootLink) {
      try {
        st = fs.statSync(root);
      } catch {
        sink.entry(entryFromStat(Buffer.alloc(0), st, fs.readlinkSync(root, { encoding: 'buffer' })));
        this.kind = 'symlink';
        return false;
      }
    }
    const rootEntry = entryFromStat(Buffer.alloc(0), st, st.isSymbolicLink() ? fs.readlinkSync(root, { encoding: 'buffer' }) : undefined);
    this.kind = rootKindOf(rootEntry.type);
    if (this.kind === 'file' && !sizeOk(rootEntry.size, opts)) return false;
    sink.entry(rootEntry);
    if (this.kind !== 'directory' || opts.shallow) return false;
    this.stack.push(Buffer.alloc(0));
    return true;
  }

  /** List directories until about `budget` entries were emitted; true when the walk is done. */
  step(budget: number): boolean {
    const { root, opts, sink, slash, stack } = this;
    let emitted = 0;
    while (stack.length > 0 && emitted < budget) {
      const rel = stack.pop()!;
      const abs = rel.length === 0 ? root : Buffer.concat([root, slash, rel]);
      let names: Buffer[];
      try {
        names = fs.readdirSync(abs, { encoding: 'buffer' });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        sink.error(rel, err.code ?? 'EIO', `cannot list directory: ${err.code ?? err.message}`);
        continue;
      }
      // Stable, byte-wise order makes listings reproducible across machines.
      names.sort(Buffer.compare);
      const subdirs: Buffer[] = [];
      for (const name of names) {
        if (this.hideParts && isTempName(name)) continue;
        const childRel = rel.length === 0 ? name : Buffer.concat([rel, slash, name]);
        const childAbs = Buffer.concat([abs, slash, name]);
        let cst: fs.Stats;
        try {
          cst = fs.lstatSync(childAbs);
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          // Vanished between readdir and lstat: report, the planner decides what it means.
          sink.error(childRel, err.code ?? 'EIO', err.code === 'ENOENT' ? 'vanished during the scan' : err.message);
          continue;
        }
        const isDir = cst.isDirectory();
        if (this.filtering && !this.filter(childRel.toString('utf8'), isDir)) continue;
        let link: Buffer | undefined;
        if (cst.isSymbolicLink()) {
          try {
            link = fs.readlinkSync(childAbs, { encoding: 'buffer' });
          } catch (e) {
            const err = e as NodeJS.ErrnoException;
            sink.error(childRel, err.code ?? 'EIO', err.message);
            continue;
          }
        }
        const ent = entryFromStat(childRel, cst, link);
        if (ent.type === EntryType.FILE && !sizeOk(ent.size, opts)) continue;
        sink.entry(ent);
        emitted++;
        if (isDir) subdirs.push(childRel);
      }
      // Depth-first in name order: push in reverse so the first name is walked first.
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
    return stack.length === 0;
  }
}

/** The whole walk at once (in a worker thread). Returns the kind of the root. */
export function walkSync(root: Buffer, opts: ScanOptions, sink: WalkSink): RootKind {
  const w = new TreeWalker(root, opts, sink);
  if (w.start()) while (!w.step(Number.MAX_SAFE_INTEGER));
  return w.kind;
}

function sizeOk(size: number, opts: ScanOptions): boolean {
  if (opts.minSize !== undefined && size < opts.minSize) return false;
  if (opts.maxSize !== undefined && size > opts.maxSize) return false;
  return true;
}

export { SLASH };
