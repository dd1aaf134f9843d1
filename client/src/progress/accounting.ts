import type { SmartcopyError } from '@smartcopy/protocol';

export type FileAction = 'copied' | 'skipped' | 'failed' | 'deleted' | 'linked' | 'dir';

export interface Totals {
  filesTotal: number;
  bytesTotal: number;
}

/** Counters of a run; renderers read them, nothing here prints. */
export class Accounting {
  filesTotal = 0;
  bytesTotal = 0;
  filesCopied = 0;
  filesSkipped = 0;
  filesFailed = 0;
  deleted = 0;
  dirsCreated = 0;
  linksCreated = 0;
  /** content bytes transferred (written at the destination) */
  bytesDone = 0;
  /** bytes that crossed the transport (0 for local copies) */
  wireBytes = 0;
  /** reads the transport's byte counters while the run is going (remote copies) */
  wireProbe: (() => number) | undefined;

  /** wire bytes so far */
  currentWire(): number {
    return this.wireProbe ? this.wireProbe() : this.wireBytes;
  }
  bytesSkipped = 0;
  /** bytes of chunks kept from an interrupted run and confirmed, not sent again */
  bytesResumed = 0;
  /** --delta: bytes rebuilt from the destination's own copy, and bytes sent as literals */
  bytesMatched = 0;
  bytesLiteral = 0;
  readonly errors: SmartcopyError[] = [];
  readonly startedAt = process.hrtime.bigint();

  get filesDone(): number {
    return this.filesCopied + this.filesSkipped + this.filesFailed;
  }

  elapsedSeconds(): number {
    return Number(process.hrtime.bigint() - this.startedAt) / 1e9;
  }
}

/** Everything that happens during a run, for the renderers (TTY progress, -v lines, --json). */
export interface RunEvents {
  start(info: { source: string; destination: string; filesTotal: number; bytesTotal: number; dryRun: boolean }): void;
  /** `chunks`: the file travelled as this many chunks over several streams */
  file(ev: { path: string; action: FileAction; bytes: number; error?: SmartcopyError; chunks?: number }): void;
  error(err: SmartcopyError): void;
  /** a periodic tick (about once a second for --json, more often for the TTY line) */
  tick(): void;
  summary(s: Summary): void;
}

export interface Summary {
  ok: boolean;
  exitCode: number;
  filesTotal: number;
  filesCopied: number;
  filesSkipped: number;
  filesFailed: number;
  deleted: number;
  bytes: number;
  bytesOnWire: number;
  bytesResumed: number;
  bytesMatched: number;
  bytesLiteral: number;
  /** file bytes / wire bytes (remote copies) */
  speedup: number;
  seconds: number;
  dryRun: boolean;
  error?: { code: string; message: string };
}

export function summaryOf(a: Accounting, exitCode: number, dryRun: boolean, fatal?: SmartcopyError): Summary {
  return {
    ok: exitCode === 0,
    exitCode,
    filesTotal: a.filesTotal,
    filesCopied: a.filesCopied,
    filesSkipped: a.filesSkipped,
    filesFailed: a.filesFailed,
    deleted: a.deleted,
    bytes: a.bytesDone,
    bytesOnWire: a.wireBytes,
    bytesResumed: a.bytesResumed,
    bytesMatched: a.bytesMatched,
    bytesLiteral: a.bytesLiteral,
    speedup: a.wireBytes > 0 ? Number((a.bytesDone / a.wireBytes).toFixed(3)) : 0,
    seconds: Number(a.elapsedSeconds().toFixed(3)),
    dryRun,
    ...(fatal ? { error: { code: fatal.code, message: fatal.message } } : {}),
  };
}

/**
 * Errors that are about the run, not one file (a broken connection, a full disk, an agent that
 * refuses writes): every file they hit fails, but the user needs to read it once.
 */
const RUN_WIDE: ReadonlySet<string> = new Set([
  'SC_ERR_CONNECTION_CLOSED',
  'SC_ERR_TIMEOUT',
  'SC_ERR_NO_SPACE',
  'SC_ERR_READ_ONLY',
  'SC_ERR_AUTH',
  'SC_ERR_BUSY',
  'SC_ERR_INTERRUPTED',
  'SC_ERR_ABORTED',
  'SC_ERR_PROTOCOL',
  'SC_ERR_PROTOCOL_VERSION',
  'SC_ERR_MALFORMED_FRAME',
  'SC_ERR_FRAME_TOO_LARGE',
]);

export function isRunWide(err: SmartcopyError): boolean {
  return RUN_WIDE.has(err.code);
}

/** Lets the first error of each run-wide kind through and counts the repeats. */
export class ErrorDeduper {
  private readonly seen = new Map<string, number>();

  /** true when this error should be shown */
  admit(err: SmartcopyError): boolean {
    if (!RUN_WIDE.has(err.code)) return true;
    const n = this.seen.get(err.code) ?? 0;
    this.seen.set(err.code, n + 1);
    return n === 0;
  }

  /** repeats that were not shown, by code */
  repeats(): Array<[code: string, count: number]> {
    return [...this.seen].filter(([, n]) => n > 1).map(([c, n]) => [c, n - 1]);
  }
}
