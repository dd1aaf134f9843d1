import type { SmartcopyError } from '@smartcopy/protocol';
import { formatBytes } from '../cli/sizes.js';
import { ErrorDeduper, isRunWide, type Accounting, type FileAction, type RunEvents } from '../progress/accounting.js';
import type { FanoutSummary, NodeResult, NodeState } from './state.js';

/** Everything a fan-out reports: each node's attempts, retries and results, and the end. */
export interface FanoutView {
  /** the events of one attempt at one node */
  attempt(node: NodeState, acct: Accounting): RunEvents;
  retry(node: NodeState, delayMs: number, why: SmartcopyError): void;
  nodeDone(node: NodeState, r: NodeResult): void;
  /** a line the node's remote side printed (an agent's stderr over SSH) */
  notice(node: NodeState, line: string): void;
  /** the fan-out as a whole failed (bad source or operands), or was interrupted */
  error(err: SmartcopyError): void;
  tick(): void;
  summary(s: FanoutSummary): void;
}

/** A quiet sink for parts of a session the fan-out view reports itself. */
const NOOP = (): void => {};

function mbps(bytes: number, secs: number): string {
  return secs > 0 && bytes > 0 ? `${(bytes / secs / 1e6).toFixed(1)} MB/s` : '';
}

/** Shorten from the left: the end of a destination (port, path) tells nodes apart best. */
export function fit(s: string, width: number): string {
  if (s.length <= width) return s.padEnd(width);
  return `…${s.slice(s.length - width + 1)}`;
}

function reason(r: NodeResult): string {
  const tries = r.attempts > 1 ? ` (${r.attempts} attempts)` : '';
  if (r.ok) return `ok${tries}`;
  return `failed: ${r.error?.message ?? `exit code ${r.exitCode}`}${tries}`;
}

/** The per-node table printed at the end (one string per line, no newlines). */
export function formatTable(s: FanoutSummary): string[] {
  const head = ['node', 'files', 'bytes', 'wire', 'time', 'result'];
  const rows = s.nodes.map((r) => [
    r.node,
    `${r.filesCopied}/${r.filesTotal}`,
    formatBytes(r.bytes),
    formatBytes(r.bytesOnWire),
    `${r.seconds.toFixed(2)} s`,
    reason(r),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // numbers right-aligned, names and results left-aligned
  const cell = (v: string, i: number): string => (i === 0 || i === head.length - 1 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!));
  const line = (r: string[]): string => r.map(cell).join('  ').trimEnd();
  const out = [line(head), ...rows.map(line)];
  const c = s.cache;
  if (c.bytesServed > 0) {
    const ratio = c.bytesRead > 0 ? (c.bytesServed / c.bytesRead).toFixed(2) : '0';
    out.push(
      `source: ${formatBytes(c.bytesRead)} read from disk for ${formatBytes(c.bytesServed)} sent (${ratio}x; ${c.blocksRead} blocks read, ${c.blocksServed} served` +
        (c.reReads > 0 ? `, ${c.reReads} read again by nodes that fell more than the cache behind` : '') +
        ')',
    );
  }
  const failed = s.nodes.filter((r) => !r.ok).length;
  out.push(`${s.dryRun ? '(dry run) ' : ''}${s.nodes.length - failed} of ${s.nodes.length} nodes ok${failed ? `, ${failed} failed` : ''} in ${s.seconds.toFixed(2)} s`);
  return out;
}

export interface HumanViewOptions {
  /** redraw one line per node in place (a terminal) */
  board: boolean;
  /** without a board: a plain progress line per node every few seconds (--progress) */
  plainProgress: boolean;
  verbose: number;
  quiet: boolean;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream & { columns?: number; rows?: number };
}

/** Seconds between plain progress lines when stderr is not a terminal. */
const PLAIN_PROGRESS_SECONDS = 5;

/** Human output: a live line per node on a terminal (plain lines otherwise), then a table. */
export class HumanFanoutView implements FanoutView {
  private drawn = 0;
  private lastPlain = 0;
  private readonly dedupers = new Map<NodeState, ErrorDeduper>();

  constructor(
    private readonly nodes: readonly NodeState[],
    private readonly opts: HumanViewOptions,
  ) {}

  private say(stream: NodeJS.WritableStream, text: string): void {
    this.clearBoard();
    stream.write(text);
  }

  private status(n: NodeState, text: string): void {
    if (!this.opts.board && !this.opts.quiet) this.say(this.opts.err, `smartcopy: ${n.name}: ${text}\n`);
  }

  attempt(node: NodeState): RunEvents {
    const dedupe = new ErrorDeduper();
    this.dedupers.set(node, dedupe);
    return {
      start: (info) => this.status(node, `${info.filesTotal} files, ${formatBytes(info.bytesTotal)}${info.dryRun ? ' (dry run)' : ''}`),
      file: (ev: { path: string; action: FileAction; bytes: number }) => {
        if (this.opts.quiet) return;
        const show = ev.action === 'skipped' ? this.opts.verbose >= 2 : this.opts.verbose >= 1 && ev.action !== 'failed';
        if (show) this.say(this.opts.out, `${node.name}: ${ev.action === 'copied' ? '' : `${ev.action}: `}${ev.path}\n`);
      },
      error: (err: SmartcopyError) => {
        if (!dedupe.admit(err)) return;
        const where = err.path && !isRunWide(err) && !err.message.includes(err.path) ? `${err.path}: ` : '';
        this.say(this.opts.err, `smartcopy: ${node.name}: ${where}${err.message}\n`);
      },
      tick: NOOP,
      summary: NOOP,
    };
  }

  retry(node: NodeState, delayMs: number, why: SmartcopyError): void {
    this.say(this.opts.err, `smartcopy: ${node.name}: ${why.message}; trying again in ${(delayMs / 1000).toFixed(1)} s (attempt ${node.attempts + 1})\n`);
  }

  nodeDone(node: NodeState, r: NodeResult): void {
    const d = this.dedupers.get(node);
    for (const [code, n] of d?.repeats() ?? []) this.say(this.opts.err, `smartcopy: ${node.name}: ${n} more failure${n === 1 ? '' : 's'} for the same reason (${code})\n`);
    if (r.ok) this.status(node, `done: ${r.filesCopied} copied, ${formatBytes(r.bytes)} in ${r.seconds.toFixed(2)} s`);
    else if (!this.opts.board && !this.opts.quiet) this.say(this.opts.err, `smartcopy: ${node.name}: ${reason(r)}\n`);
  }

  notice(node: NodeState, line: string): void {
    this.say(this.opts.err, `smartcopy: ${node.name}: remote: ${line}\n`);
  }

  error(err: SmartcopyError): void {
    this.say(this.opts.err, `smartcopy: ${err.message}\n`);
  }

  tick(): void {
    if (this.opts.quiet) return;
    if (this.opts.board) return this.drawBoard();
    if (!this.opts.plainProgress) return;
    const now = Date.now();
    if (now - this.lastPlain < PLAIN_PROGRESS_SECONDS * 1000) return;
    this.lastPlain = now;
    for (const n of this.nodes) if (n.phase === 'sending') this.opts.err.write(`smartcopy: ${n.name}: ${this.progress(n)}\n`);
  }

  summary(s: FanoutSummary): void {
    if (this.opts.board && !this.opts.quiet) this.drawBoard();
    this.clearBoard();
    if (this.opts.quiet) return;
    this.opts.err.write(formatTable(s).map((l) => `${l}\n`).join(''));
  }

  private progress(n: NodeState): string {
    const a = n.acct;
    if (!a) return '';
    const secs = a.elapsedSeconds();
    return (
      `${a.filesDone}/${a.filesTotal} files  ${formatBytes(a.bytesDone)}/${formatBytes(Math.max(0, a.bytesTotal - a.bytesSkipped))}` +
      `  ${mbps(a.bytesDone, secs)}${a.filesFailed ? `  (${a.filesFailed} failed)` : ''}`
    );
  }

  private lineOf(n: NodeState): string {
    switch (n.phase) {
      case 'sending':
      case 'finishing':
        return this.progress(n);
      case 'retrying': {
        const left = Math.max(0, ((n.retryAt ?? 0) - Date.now()) / 1000);
        return `retrying in ${left.toFixed(1)} s: ${n.lastError?.message ?? ''}`;
      }
      case 'done':
        return n.result ? `done: ${n.result.filesCopied} copied, ${formatBytes(n.result.bytes)} in ${n.result.seconds.toFixed(2)} s` : 'done';
      case 'failed':
        return `FAILED: ${n.result?.error?.message ?? ''}`;
      case 'waiting':
        return 'waiting for the other nodes to plan';
      default:
        return `${n.phase}…`;
    }
  }

  private drawBoard(): void {
    // a terminal that reports no size (0) gets the classic 80x24
    const cols = Math.max(20, (this.opts.err.columns || 80) - 1);
    // a board taller than the terminal cannot be redrawn in place: show what fits and a count
    const room = Math.max(2, (this.opts.err.rows || 24) - 2);
    const shown = this.nodes.length > room ? this.nodes.slice(0, room - 1) : this.nodes;
    const nameW = Math.min(32, Math.max(...shown.map((n) => n.name.length)));
    const lines = shown.map((n) => `${fit(n.name, nameW)}  ${this.lineOf(n)}`.slice(0, cols));
    if (shown.length < this.nodes.length) {
      const rest = this.nodes.slice(shown.length);
      const done = rest.filter((n) => n.phase === 'done').length;
      const failed = rest.filter((n) => n.phase === 'failed').length;
      lines.push(`… ${rest.length} more nodes: ${done} done, ${failed} failed, ${rest.length - done - failed} running`.slice(0, cols));
    }
    let s = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    for (const l of lines) s += `\x1b[2K${l}\n`;
    if (lines.length < this.drawn) s += '\x1b[J';
    this.opts.err.write(s);
    this.drawn = lines.length;
  }

  private clearBoard(): void {
    if (this.drawn === 0) return;
    this.opts.err.write(`\x1b[${this.drawn}F\x1b[J`);
    this.drawn = 0;
  }
}

/**
 * --json: per-node events `{"event":"node","node":...,"type":"start"|"file"|"error"|"retry"|"summary"}`,
 * a `progress` event with every node about once a second, and a final `summary` with `nodes`.
 */
export class JsonFanoutView implements FanoutView {
  private lastTick = 0;

  constructor(
    private readonly nodes: readonly NodeState[],
    private readonly out: NodeJS.WritableStream,
  ) {}

  private emit(o: object): void {
    this.out.write(`${JSON.stringify(o)}\n`);
  }

  attempt(node: NodeState): RunEvents {
    const dedupe = new ErrorDeduper();
    const base = (): { event: string; node: string; index: number; attempt: number } => ({ event: 'node', node: node.name, index: node.index, attempt: node.attempts });
    return {
      start: (info) => this.emit({ ...base(), type: 'start', time: new Date().toISOString(), ...info }),
      file: (ev) =>
        this.emit({
          ...base(),
          type: 'file',
          path: ev.path,
          action: ev.action,
          bytes: ev.bytes,
          ...(ev.chunks ? { chunks: ev.chunks } : {}),
          ...(ev.error ? { error: { code: ev.error.code, message: ev.error.message } } : {}),
        }),
      error: (err) => {
        if (dedupe.admit(err)) this.emit({ ...base(), type: 'error', code: err.code, message: err.message, ...(err.path ? { path: err.path } : {}) });
      },
      tick: NOOP,
      summary: NOOP,
    };
  }

  retry(node: NodeState, delayMs: number, why: SmartcopyError): void {
    this.emit({ event: 'node', node: node.name, index: node.index, attempt: node.attempts, type: 'retry', delayMs, error: { code: why.code, message: why.message } });
  }

  nodeDone(_node: NodeState, r: NodeResult): void {
    this.emit({ event: 'node', type: 'summary', ...r });
  }

  notice(node: NodeState, line: string): void {
    this.emit({ event: 'node', node: node.name, index: node.index, attempt: node.attempts, type: 'notice', line });
  }

  error(err: SmartcopyError): void {
    this.emit({ event: 'error', code: err.code, message: err.message, ...(err.path ? { path: err.path } : {}) });
  }

  tick(): void {
    const now = Date.now();
    if (now - this.lastTick < 1000) return;
    this.lastTick = now;
    this.emit({
      event: 'progress',
      nodes: this.nodes.map((n) => ({
        node: n.name,
        index: n.index,
        phase: n.phase,
        attempt: n.attempts,
        filesDone: n.acct?.filesDone ?? 0,
        filesTotal: n.acct?.filesTotal ?? 0,
        bytesDone: n.acct?.bytesDone ?? 0,
        bytesTotal: n.acct?.bytesTotal ?? 0,
        bytesOnWire: n.acct?.currentWire() ?? 0,
      })),
    });
  }

  summary(s: FanoutSummary): void {
    this.emit({ event: 'summary', ...s });
  }
}
