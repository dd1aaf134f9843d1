import { formatBytes } from '../cli/sizes.js';
import { ErrorDeduper, isRunWide, type Accounting, type FileAction, type RunEvents, type Summary } from './accounting.js';
import type { SmartcopyError } from '@smartcopy/protocol';

function rate(bytes: number, secs: number): string {
  if (secs <= 0) return '';
  const bps = bytes / secs;
  return `${(bps / 1e6).toFixed(1)} MB/s (${((bps * 8) / 1e9).toFixed(2)} Gbit/s)`;
}

function eta(a: Accounting, secs: number): string {
  const left = a.bytesTotal - a.bytesDone - a.bytesSkipped;
  if (a.bytesDone <= 0 || secs <= 0 || left <= 0) return '';
  const s = Math.round(left / (a.bytesDone / secs));
  return ` ETA ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Human output: a one-line progress meter on stderr, -v file lines and a summary. */
export class HumanRenderer implements RunEvents {
  private lastLen = 0;
  private readonly dedupe = new ErrorDeduper();

  constructor(
    private readonly a: Accounting,
    private readonly opts: { progress: boolean; verbose: number; quiet: boolean; out: NodeJS.WriteStream; err: NodeJS.WriteStream },
  ) {}

  start(): void {}

  private clearLine(): void {
    if (this.lastLen > 0) {
      this.opts.err.write(`\r${' '.repeat(this.lastLen)}\r`);
      this.lastLen = 0;
    }
  }

  file(ev: { path: string; action: FileAction; bytes: number; error?: SmartcopyError }): void {
    if (this.opts.quiet) return;
    const show = ev.action === 'skipped' ? this.opts.verbose >= 2 : this.opts.verbose >= 1 && ev.action !== 'failed';
    if (!show) return;
    this.clearLine();
    const tag = ev.action === 'copied' ? '' : `${ev.action}: `;
    this.opts.out.write(`${tag}${ev.path}\n`);
  }

  error(err: SmartcopyError): void {
    if (!this.dedupe.admit(err)) return;
    this.clearLine();
    const where = err.path && !isRunWide(err) && !err.message.includes(err.path) ? `${err.path}: ` : '';
    this.opts.err.write(`smartcopy: ${where}${err.message}\n`);
  }

  tick(): void {
    if (!this.opts.progress || this.opts.quiet) return;
    const a = this.a;
    const secs = a.elapsedSeconds();
    const line =
      `${a.filesDone}/${a.filesTotal} files` +
      (a.filesSkipped ? ` (${a.filesSkipped} skipped)` : '') +
      (a.filesFailed ? ` (${a.filesFailed} failed)` : '') +
      `  ${formatBytes(a.bytesDone)}/${formatBytes(Math.max(0, a.bytesTotal - a.bytesSkipped))}  ${rate(a.bytesDone, secs)}${eta(a, secs)}`;
    const pad = this.lastLen > line.length ? ' '.repeat(this.lastLen - line.length) : '';
    this.opts.err.write(`\r${line}${pad}`);
    this.lastLen = line.length;
  }

  summary(s: Summary): void {
    if (this.opts.progress && !this.opts.quiet) this.tick();
    this.clearLine();
    for (const [code, n] of this.dedupe.repeats()) {
      this.opts.err.write(`smartcopy: ${n} more failure${n === 1 ? '' : 's'} for the same reason (${code})\n`);
    }
    if (this.opts.quiet || (!this.opts.progress && this.opts.verbose === 0)) return;
    const parts = [
      `${s.filesCopied} copied`,
      `${s.filesSkipped} skipped`,
      ...(s.filesFailed ? [`${s.filesFailed} failed`] : []),
      ...(s.deleted ? [`${s.deleted} deleted`] : []),
    ];
    const wire = s.bytesOnWire > 0 ? `, ${formatBytes(s.bytesOnWire)} on the wire` : '';
    this.opts.err.write(
      `${s.dryRun ? '(dry run) ' : ''}${parts.join(', ')}; ${formatBytes(s.bytes)}${wire} in ${s.seconds.toFixed(2)} s` +
        (s.seconds > 0 && s.bytes > 0 ? `, ${rate(s.bytes, s.seconds)}` : '') + '\n',
    );
  }
}

/** --json: one JSON object per line on stdout. The event schema is documented in the README. */
export class JsonRenderer implements RunEvents {
  private lastTick = 0;
  private readonly dedupe = new ErrorDeduper();

  constructor(
    private readonly a: Accounting,
    private readonly out: NodeJS.WritableStream,
  ) {}

  private emit(o: object): void {
    this.out.write(`${JSON.stringify(o)}\n`);
  }

  start(info: { source: string; destination: string; filesTotal: number; bytesTotal: number; dryRun: boolean }): void {
    this.emit({ event: 'start', time: new Date().toISOString(), ...info });
  }

  file(ev: { path: string; action: FileAction; bytes: number; error?: SmartcopyError; chunks?: number }): void {
    this.emit({
      event: 'file',
      path: ev.path,
      action: ev.action,
      bytes: ev.bytes,
      ...(ev.chunks ? { chunks: ev.chunks } : {}),
      ...(ev.error ? { error: { code: ev.error.code, message: ev.error.message } } : {}),
    });
  }

  error(err: SmartcopyError): void {
    // each file event carries its own error; a run-wide one is reported as an error event once
    if (!this.dedupe.admit(err)) return;
    this.emit({ event: 'error', code: err.code, message: err.message, ...(err.path ? { path: err.path } : {}) });
  }

  tick(): void {
    const now = Date.now();
    if (now - this.lastTick < 1000) return;
    this.lastTick = now;
    const a = this.a;
    const secs = a.elapsedSeconds();
    this.emit({
      event: 'progress',
      filesDone: a.filesDone,
      filesTotal: a.filesTotal,
      bytesDone: a.bytesDone,
      bytesTotal: a.bytesTotal,
      bytesOnWire: a.currentWire(),
      bytesMatched: a.bytesMatched,
      bytesLiteral: a.bytesLiteral,
      seconds: Number(secs.toFixed(3)),
      bytesPerSecond: secs > 0 ? Math.round(a.bytesDone / secs) : 0,
    });
  }

  summary(s: Summary): void {
    this.emit({ event: 'summary', ...s });
  }
}
