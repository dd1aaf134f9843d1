import path from 'node:path';
import { EntryType, type Entry } from '@smartcopy/protocol';
import { compileRules, toWireEntry, type ScanEntry } from '@smartcopy/agent';
import type { Config } from '../config.js';
import { joinRel } from '../endpoints.js';
import { keyOf, type PlanOptions, type SourceItem } from './plan.js';

/** A source listing mapped onto destination paths. */
export interface Mapped {
  items: SourceItem[];
  /** destination path (under the receiver's root) that the destination listing starts from */
  listRoot: Buffer;
  /** list the destination recursively (directory mirror) or only that one path */
  recursive: boolean;
}

/**
 * Where each source entry goes. A directory source mirrors its contents into DST; a file source
 * goes inside DST when DST is an existing directory or ends in '/', else it becomes DST.
 * `srcOf` gives the sender's path for a relative source path.
 */
export function mapSource(
  rootKind: string,
  entries: readonly ScanEntry[],
  srcOf: (rel: Buffer) => Buffer,
  srcName: string,
  destPrefix: Buffer,
  dstIsDir: boolean,
  dstSlash: boolean,
): Mapped {
  const root = mappingRoot(rootKind, srcName, destPrefix, dstIsDir, dstSlash);
  if (root.recursive) {
    const slash = Buffer.from('/');
    const items = entries.map((e) => ({
      entry: e,
      src: srcOf(e.path),
      dest: e.path.length === 0 ? destPrefix : destPrefix.length === 0 ? e.path : Buffer.concat([destPrefix, slash, e.path]),
      display: e.path.length === 0 ? '.' : e.path.toString('utf8'),
    }));
    return { items, ...root };
  }
  const display = path.posix.basename(srcName.replace(/\/+$/, '')) || srcName;
  const items = entries.map((e) => ({ entry: e, src: srcOf(e.path), dest: root.listRoot, display }));
  return { items, ...root };
}

/**
 * Where the destination listing starts, known from the source's kind alone, so the destination
 * can be listed while the source is still being walked.
 */
export function mappingRoot(rootKind: string, srcName: string, destPrefix: Buffer, dstIsDir: boolean, dstSlash: boolean): { listRoot: Buffer; recursive: boolean } {
  if (rootKind === 'directory') return { listRoot: destPrefix, recursive: true };
  const base = Buffer.from(path.posix.basename(srcName.replace(/\/+$/, '')) || srcName);
  return { listRoot: dstIsDir || dstSlash ? joinRel(destPrefix, base) : destPrefix, recursive: false };
}

/** The planner's options for a run. */
export function planOptions(cfg: Config): PlanOptions {
  return { incremental: cfg.incremental, checksum: cfg.checksum, deleteExtra: cfg.deleteExtra, order: cfg.order, protect: protector(cfg) };
}

/** Destination entries that filters or size limits exclude are never deleted (rsync semantics). */
export function protector(cfg: Config): (rel: string, e: Entry) => boolean {
  const filter = compileRules(cfg.rules);
  return (rel, e) => {
    if (!filter(rel, e.type === EntryType.DIRECTORY)) return true;
    if (e.type === EntryType.FILE) {
      if (cfg.minSize !== undefined && e.size < cfg.minSize) return true;
      if (cfg.maxSize !== undefined && e.size > cfg.maxSize) return true;
    }
    return false;
  };
}

/** A listing (paths relative to `base`) keyed by full destination path. */
export function listingToMap(base: Buffer, entries: Iterable<Entry>): Map<string, Entry> {
  const m = new Map<string, Entry>();
  const baseKey = keyOf(base);
  for (const e of entries) {
    const rel = keyOf(e.path);
    m.set(rel === '' ? baseKey : baseKey === '' ? rel : `${baseKey}/${rel}`, e);
  }
  return m;
}

/** A wire Entry as a scan entry. */
export function fromWire(e: Entry): ScanEntry {
  return {
    path: Buffer.from(e.path),
    type: e.type,
    size: e.size,
    mtimeSec: e.mtimeSec,
    mtimeNsec: e.mtimeNsec,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    linkTarget: e.type === EntryType.SYMLINK ? Buffer.from(e.linkTarget) : undefined,
    hash: e.hash.length > 0 ? Buffer.from(e.hash) : undefined,
  };
}

const NO_BYTES = Buffer.alloc(0);

/** A scan entry in the wire Entry shape (for planning against a local listing). */
export function toEntry(e: ScanEntry): Entry {
  return { ...toWireEntry(e), linkTarget: e.linkTarget ?? NO_BYTES, hash: e.hash ?? NO_BYTES };
}

/**
 * Apply filters and size limits to a listing made without them (a remote source): an entry is
 * dropped when a rule excludes it or any of its parent directories (excluded directories are
 * not descended).
 */
export function filterListing(cfg: Config, entries: readonly ScanEntry[]): ScanEntry[] {
  const filter = compileRules(cfg.rules);
  const dropped = new Set<string>();
  const out: ScanEntry[] = [];
  for (const e of entries) {
    if (e.path.length === 0) {
      out.push(e);
      continue;
    }
    const key = keyOf(e.path);
    const slash = key.lastIndexOf('/');
    if (slash >= 0 && dropped.has(key.slice(0, slash))) {
      if (e.type === EntryType.DIRECTORY) dropped.add(key);
      continue;
    }
    const isDir = e.type === EntryType.DIRECTORY;
    if (!filter(e.path.toString('utf8'), isDir)) {
      if (isDir) dropped.add(key);
      continue;
    }
    if (e.type === EntryType.FILE) {
      if (cfg.minSize !== undefined && e.size < cfg.minSize) continue;
      if (cfg.maxSize !== undefined && e.size > cfg.maxSize) continue;
    }
    out.push(e);
  }
  return out;
}
