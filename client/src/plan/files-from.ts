import fs from 'node:fs/promises';
import path from 'node:path';
import { SmartcopyError } from '@smartcopy/protocol';
import { entryFromStat, scanTree, type ScanResult } from '@smartcopy/agent';
import type { Config } from '../config.js';
import type { SourceItem } from './plan.js';

export interface FilesFromMapping {
  src: string;
  dst: string;
}

/**
 * Read a --files-from list: either one path per line (relative to SRC; blank lines and lines
 * starting with '#' are ignored), or a JSON array of {"src": ..., "dst": ...} mappings where
 * src is relative to SRC and dst relative to DST.
 */
export async function readFilesFrom(file: string): Promise<FilesFromMapping[]> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new SmartcopyError('SC_ERR_USAGE', `--files-from ${file}: ${(e as NodeJS.ErrnoException).code ?? 'cannot read'}`);
  }
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let data: unknown;
    try {
      data = JSON.parse(trimmed);
    } catch (e) {
      throw new SmartcopyError('SC_ERR_USAGE', `--files-from ${file}: invalid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(data)) throw new SmartcopyError('SC_ERR_USAGE', `--files-from ${file}: expected a JSON array`);
    return data.map((m, i) => {
      if (typeof m === 'string') return { src: m, dst: m };
      const o = m as Record<string, unknown>;
      if (!o || typeof o.src !== 'string' || (o.dst !== undefined && typeof o.dst !== 'string')) {
        throw new SmartcopyError('SC_ERR_USAGE', `--files-from ${file}: item ${i} must be {"src": "...", "dst": "..."}`);
      }
      return { src: o.src, dst: (o.dst as string | undefined) ?? o.src };
    });
  }
  return text
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => ({ src: l, dst: l }));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function inside(rel: string, what: string): string {
  const norm = path.posix.normalize(rel.replace(/^\/+/, ''));
  if (norm === '..' || norm.startsWith('../') || rel.split('/').includes('..')) {
    throw new SmartcopyError('SC_ERR_USAGE', `--files-from: ${what} ${JSON.stringify(rel)} leaves its directory`);
  }
  return norm === '.' ? '' : norm.replace(/\/$/, '');
}

/** List exactly the --files-from paths (a listed directory brings its whole subtree). */
export async function scanFilesFrom(cfg: Config, srcAbs: string, list: FilesFromMapping[], signal: AbortSignal): Promise<ScanResult & { items: SourceItem[] }> {
  const items: SourceItem[] = [];
  const errors: ScanResult['errors'] = [];
  const st0 = await fs.stat(srcAbs).catch(() => undefined);
  if (!st0) return { rootKind: 'missing', entries: [], errors, items };
  if (!st0.isDirectory()) throw new SmartcopyError('SC_ERR_USAGE', '--files-from needs SRC to be a directory');
  for (const m of list) {
    const srcRel = inside(m.src, 'src');
    const dstRel = inside(m.dst, 'dst');
    if (srcRel === '' || dstRel === '') throw new SmartcopyError('SC_ERR_USAGE', '--files-from: an entry names the whole directory; copy without --files-from instead');
    const abs = path.join(srcAbs, srcRel);
    const st = await fs.lstat(abs).catch((e: NodeJS.ErrnoException) => e);
    if (st instanceof Error) {
      errors.push({ path: Buffer.from(srcRel), code: st.code ?? 'EIO', message: st.code === 'ENOENT' ? 'listed in --files-from but does not exist' : st.message });
      continue;
    }
    if (st.isDirectory()) {
      const res = await scanTree(Buffer.from(abs), { rules: cfg.rules, minSize: cfg.minSize, maxSize: cfg.maxSize, hashAlgo: cfg.checksum ? 'xxhash64' : undefined, hideParts: true }, signal);
      for (const e of res.entries) {
        const dest = e.path.length === 0 ? Buffer.from(dstRel) : Buffer.concat([Buffer.from(`${dstRel}/`), e.path]);
        items.push({ entry: { ...e, path: dest }, src: e.path.length === 0 ? Buffer.from(abs) : Buffer.concat([Buffer.from(`${abs}/`), e.path]), dest, display: dest.toString('utf8') });
      }
      for (const e of res.errors) errors.push({ ...e, path: Buffer.concat([Buffer.from(`${srcRel}/`), e.path]) });
      continue;
    }
    const link = st.isSymbolicLink() ? await fs.readlink(abs, { encoding: 'buffer' }) : undefined;
    const dest = Buffer.from(dstRel);
    const entry = entryFromStat(dest, st, link);
    if (cfg.checksum && st.isFile()) {
      const { hashFile } = await import('@smartcopy/agent');
      entry.hash = await hashFile(abs, 'xxhash64');
    }
    items.push({ entry, src: Buffer.from(abs), dest, display: dstRel });
  }
  return { rootKind: 'directory', entries: [], errors, items };
}
