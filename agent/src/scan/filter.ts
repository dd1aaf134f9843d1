import picomatch from 'picomatch';
import type { FilterRule } from './types.js';

/** Decides whether a relative path is part of the transfer. */
export type PathFilter = (relPath: string, isDir: boolean) => boolean;

const PM_OPTS = { dot: true, nonegate: true } as const;

/**
 * Compile ordered include/exclude rules with rsync's matching semantics:
 * - the first rule that matches decides; no match means included;
 * - a pattern ending in '/' matches directories only;
 * - a pattern without '/' (other than a trailing one) and without '**' matches the final
 *   path component at any depth; otherwise it matches the whole path, anchored at the root when it
 *   starts with '/', else against the end of the path;
 * - 'dir/***' matches dir itself and everything below it.
 */
export function compileRules(rules: readonly FilterRule[]): PathFilter {
  if (rules.length === 0) return () => true;
  const compiled = rules.map((r) => {
    let p = r.pattern;
    const dirOnly = p.endsWith('/') && p.length > 1;
    if (dirOnly) p = p.slice(0, -1);
    const anchored = p.startsWith('/');
    if (anchored) p = p.slice(1);
    const wholePath = p.includes('/') || p.includes('**');
    let alts: string[];
    if (p.endsWith('/***')) {
      const base = p.slice(0, -4);
      alts = [base, `${base}/**`];
    } else {
      alts = [p];
    }
    if (wholePath && !anchored) alts = alts.flatMap((a) => [a, `**/${a}`]);
    const match = picomatch(alts, PM_OPTS);
    return { include: r.include, dirOnly, wholePath, match };
  });
  return (relPath, isDir) => {
    const slash = relPath.lastIndexOf('/');
    const base = slash < 0 ? relPath : relPath.slice(slash + 1);
    for (const c of compiled) {
      if (c.dirOnly && !isDir) continue;
      if (c.match(c.wholePath ? relPath : base)) return c.include;
    }
    return true;
  };
}
