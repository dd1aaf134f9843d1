export * from './types.js';
export { scanTree, scanTreeInline } from './scan.js';
export { compileRules, type PathFilter } from './filter.js';
export { walkSync, TreeWalker, isTempName, entryFromStat, typeOf } from './walk.js';
