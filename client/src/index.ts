// Library API of smartcopy: the same engine as the CLI.
export { copy, closeConnections, connectionStats, type CopyOptions, type CopyResult } from './api.js';
export type { Summary, FileAction } from './progress/accounting.js';
export { main } from './cli/main.js';
export { fanout, parseHostsFile, type FanoutSummary, type NodeResult } from './fanout/index.js';
