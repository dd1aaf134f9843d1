import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ConnectionClosedError } from '@smartcopy/protocol';
import { PipeStream } from '../src/index.js';
import { runTransportCompliance, sink, until } from './compliance.js';
import { relayHarness } from './helpers/relay.js';

/**
 * The client end of a relay child: a PipeStream over its stdout/stdin whose EOF counts as a
 * clean end only once the child exited 0, and whose abort stops the child (as an SSH exec
 * stream does with the remote command).
 */
class ChildStream extends PipeStream {
  readonly #child: ChildProcess;
  #eof = false;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #stderr = '';

  constructor(child: ChildProcess) {
    super(child.stdout!, child.stdin!, { id: `child:${child.pid}`, describePeer: `relay (pid ${child.pid})` });
    this.#child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.#stderr += d));
    child.once('exit', (code, signal) => {
      this.#exit = { code, signal };
      this.#decide();
    });
  }

  protected override onReadableEnd(): void {
    this.#eof = true;
    this.#decide();
  }

  protected override sendAbort(err: Error): void {
    // the signal first, the pipes once it took effect: the child must not mistake our abort for
    // a clean end of its input
    if (this.#exit !== undefined || !this.#child.kill('SIGTERM')) super.sendAbort(err);
    else this.#child.once('exit', () => super.sendAbort(err));
  }

  #decide(): void {
    const exit = this.#exit;
    if (!this.#eof || exit === undefined) return;
    if (exit.code === 0) this.remoteEnded();
    else this.remoteAborted(new ConnectionClosedError(`relay exited (${exit.code ?? exit.signal}): ${this.#stderr.trim()}`));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

runTransportCompliance(
  'stdio: PipeStream over a child process, stdioStream() inside it',
  relayHarness(async () => {
    const children = new Set<ChildProcess>();
    return {
      async start(argv) {
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
        children.add(child);
        await new Promise<void>((resolve, reject) => {
          child.once('spawn', resolve);
          child.once('error', reject);
        });
        return new ChildStream(child);
      },
      async teardown() {
        for (const c of children) c.kill('SIGKILL');
        await Promise.all([...children].map(exited));
      },
    };
  }),
  { bigWriteBytes: 16 * 1024 * 1024 },
);

describe('PipeStream', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartcopy-stdio-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('moves bytes both ways over a Readable/Writable pair; end() ends the writable', async () => {
    const incoming = new PassThrough();
    const outgoing = new PassThrough();
    const s = new PipeStream(incoming, outgoing, { id: 'pair' });
    const got = sink(s, { keep: true });
    const sent: Buffer[] = [];
    outgoing.on('data', (c: Buffer) => sent.push(c));
    const finished = new Promise<void>((r) => outgoing.once('finish', r));
    s.write([Buffer.from('he'), Buffer.from('llo')]);
    await s.end();
    await finished;
    assert.equal(Buffer.concat(sent).toString(), 'hello');
    incoming.end(Buffer.from('world'));
    assert.equal((await got.result).data!.toString(), 'world');
    await s.closed;
    assert.equal(s.state, 'closed');
  });

  it('a pipe error aborts the stream with a one-line ConnectionClosedError naming the peer', async () => {
    const incoming = new PassThrough();
    const outgoing = new PassThrough();
    const s = new PipeStream(incoming, outgoing, { id: 'pair', describePeer: 'the test peer' });
    const errors: Error[] = [];
    s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    incoming.destroy(Object.assign(new Error('read failed\nsecond line'), { code: 'EIO', syscall: 'read' }));
    await s.closed;
    await until(() => errors.length === 1);
    assert.ok(errors[0] instanceof ConnectionClosedError);
    assert.equal(errors[0].message, 'the test peer: EIO (read)');
    assert.throws(() => s.write(Buffer.from('x')), { code: 'SC_ERR_CONNECTION_CLOSED' });
  });

  it('a readable that closes without an end aborts the stream', async () => {
    const incoming = new PassThrough();
    const s = new PipeStream(incoming, new PassThrough(), { id: 'pair', describePeer: 'peer' });
    const errors: Error[] = [];
    s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    incoming.destroy();
    await s.closed;
    await until(() => errors.length === 1);
    assert.equal(errors[0]!.message, 'peer: closed before the stream ended');
  });

  it('abort() destroys both sides', async () => {
    const incoming = new PassThrough();
    const outgoing = new PassThrough();
    const s = new PipeStream(incoming, outgoing, { id: 'pair' });
    s.abort();
    await s.closed;
    assert.ok(incoming.destroyed);
    assert.ok(outgoing.destroyed);
  });

  it('write() reports the writable backpressure and drain() waits for it', async () => {
    const incoming = new PassThrough();
    const outgoing = new PassThrough({ highWaterMark: 1024 });
    const s = new PipeStream(incoming, outgoing, { id: 'pair', highWaterMark: 4096 });
    const block = Buffer.alloc(64 * 1024, 1);
    assert.equal(s.write(block), false);
    let drained = false;
    const d = s.drain().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(drained, false, 'nothing reads the writable: drain() waits');
    outgoing.resume();
    await d;
    s.abort();
  });

  it('stdioStream(): end() gives the peer its EOF on a pipe while the process keeps running', async () => {
    // The child's stdout is a FIFO (a real pipe, as under sshd), where Node's own end() would
    // leave the fd open until exit. The child exits only after its stdin ends, which we do only
    // after seeing EOF: without the fd release this deadlocks and the test times out.
    const child = path.join(dir, 'child.mjs');
    fs.writeFileSync(
      child,
      `import { stdioStream } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
const s = stdioStream();
s.setReader({ data() {}, end() { s.closed.then(() => process.exit(0)); }, error() { process.exit(2); } });
s.write(Buffer.from('hello from the child'));
await s.end();
`,
    );
    const fifo = path.join(dir, 'stdout.fifo');
    await promisify(execFile)('mkfifo', [fifo]);
    // exec: no shell stays behind holding the FIFO open
    const proc = spawn('sh', ['-c', 'exec "$0" "$1" > "$2"', process.execPath, child, fifo], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    const out: Buffer[] = [];
    const reader = fs.createReadStream(fifo);
    reader.on('data', (c) => out.push(c as Buffer));
    await new Promise<void>((r) => reader.once('end', () => r()));
    assert.equal(Buffer.concat(out).toString(), 'hello from the child');
    assert.equal(proc.exitCode, null, 'EOF arrived before the child exited');
    proc.stdin!.end();
    assert.equal(await exited, 0);
  });
});
