export * from './types.js';
export { scanTree } from './scan.js';
export { compileRules, type PathFilter } from './filter.js';
export { walkSync, isTempName, entryFromStat, typeOf } from './walk.js';
