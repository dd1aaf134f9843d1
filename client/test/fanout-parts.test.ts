import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExitCode, SmartcopyError } from '@smartcopy/protocol';
import { BlockCache } from '@smartcopy/agent';
import { isRetryable, nodeName, parseHostsFile, retryDelay, RETRY_BACKOFF_MAX_MS } from '../src/fanout/index.js';
import { PlanGate } from '../src/fanout/gate.js';
import { JsonFanoutView, fit, formatTable, type FanoutView } from '../src/fanout/render.js';
import { NodeState, fanoutExitCode, type FanoutSummary } from '../src/fanout/state.js';
import { Accounting } from '../src/progress/accounting.js';
import { parseTarget } from '../src/targets.js';

describe('parseHostsFile', () => {
  it('takes one destination per line and skips blank lines and comments', () => {
    const text = [
      '# cluster A',
      'node1:9878:/data',
      '',
      '   tcp://node2:9000/data   ',
      'quic://node3:4433/data  # the QUIC one',
      '\t# indented comment',
      'ssh://root@node4/data',
      '/mnt/local/copy#3',
    ].join('\n');
    assert.deepEqual(parseHostsFile(text), ['node1:9878:/data', 'tcp://node2:9000/data', 'quic://node3:4433/data', 'ssh://root@node4/data', '/mnt/local/copy#3']);
  });

  it('copes with CRLF line ends, a byte-order mark and a missing final newline', () => {
    assert.deepEqual(parseHostsFile('\uFEFFa:1:/x\r\nb:2:/y\r\n\r\nc:3:/z'), ['a:1:/x', 'b:2:/y', 'c:3:/z']);
  });

  it('gives an empty list for a file of comments only', () => {
    assert.deepEqual(parseHostsFile('# nothing\n\n   \n#more\n'), []);
  });
});

describe('fan-out retry policy', () => {
  it('retries lost or refused connections, not file or usage errors', () => {
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_CONNECT', 'refused')), true);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'lost')), true);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_TIMEOUT', 'silent')), true);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_BUSY', 'busy')), true);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_IO', 'flaky', { retryable: true })), true);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_AUTH', 'bad token')), false);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_DEST_INVALID', 'not a dir')), false);
    assert.equal(isRetryable(new SmartcopyError('SC_ERR_NO_SPACE', 'full')), false);
  });

  it('backs off exponentially up to a cap', () => {
    assert.equal(retryDelay(1), 500);
    assert.equal(retryDelay(2), 1000);
    assert.equal(retryDelay(3), 2000);
    assert.equal(retryDelay(30), RETRY_BACKOFF_MAX_MS);
  });
});

describe('PlanGate', () => {
  it('opens when every member has arrived or left', async () => {
    const gate = new PlanGate(3, 60_000);
    const [a, b, c] = [gate.member(), gate.member(), gate.member()];
    let opened = 0;
    const pa = a.arrive().then(() => opened++);
    b.leave();
    await new Promise((r) => setImmediate(r));
    assert.equal(opened, 0, 'c has not planned yet');
    const pc = c.arrive().then(() => opened++);
    await Promise.all([pa, pc]);
    assert.equal(opened, 2);
    // leaving after arriving, and arriving again, change nothing
    a.leave();
    c.leave();
    await a.arrive();
  });

  it('stops waiting for a slow member after the limit', async () => {
    const gate = new PlanGate(2, 30);
    const slow = gate.member();
    await gate.member().arrive();
    assert.equal(gate.isOpen, true);
    await slow.arrive();
  });

  it('an aborted run stops waiting', async () => {
    const gate = new PlanGate(2, 60_000);
    const ac = new AbortController();
    const p = gate.member().arrive(ac.signal);
    ac.abort();
    await p;
  });
});

function node(i: number, name: string): NodeState {
  return new NodeState(i, name, parseTarget(name));
}

describe('fan-out results', () => {
  it('exit code is 0 only when every node succeeded, else the worst node decides', () => {
    const cache = new BlockCache();
    const mk = (code: number, fatal?: SmartcopyError): NodeState => {
      const n = node(0, 'h:1:/x');
      n.attempts = 1;
      n.acct = new Accounting();
      n.endAttempt(n.acct, cache.consumer());
      n.finish(code, fatal, false);
      return n;
    };
    assert.equal(fanoutExitCode([mk(0), mk(0)]), 0);
    assert.equal(fanoutExitCode([mk(0), mk(ExitCode.PARTIAL)]), ExitCode.PARTIAL);
    const conn = new SmartcopyError('SC_ERR_CONNECT', 'refused');
    assert.equal(fanoutExitCode([mk(ExitCode.VANISHED), mk(conn.exitCode, conn), mk(ExitCode.PARTIAL)]), ExitCode.SOCKET_IO);
    const auth = new SmartcopyError('SC_ERR_AUTH', 'bad token');
    assert.equal(fanoutExitCode([mk(conn.exitCode, conn), mk(auth.exitCode, auth)]), ExitCode.AUTH, 'the more severe error wins');
  });

  it('the table has a row per node with files, bytes, wire bytes, time and result', () => {
    const s: FanoutSummary = {
      ok: false,
      exitCode: 10,
      source: '/src',
      dryRun: false,
      seconds: 3.5,
      cache: { blocksRead: 10, bytesRead: 10 << 20, blocksServed: 30, bytesServed: 30 << 20, reReads: 2, reReadBytes: 2 << 20, evictions: 2, peakBytes: 1 << 20 },
      nodes: [
        { node: 'a:1:/d', index: 0, ok: true, exitCode: 0, attempts: 1, filesTotal: 5, filesCopied: 5, filesSkipped: 0, filesFailed: 0, deleted: 0, bytes: 10 << 20, bytesOnWire: 11 << 20, bytesResumed: 0, bytesMatched: 0, bytesLiteral: 0, blocksRead: 10, blocksServed: 10, reReads: 0, seconds: 1.25 },
        { node: 'b:2:/d', index: 1, ok: false, exitCode: 10, attempts: 3, filesTotal: 5, filesCopied: 1, filesSkipped: 0, filesFailed: 4, deleted: 0, bytes: 1 << 20, bytesOnWire: 1 << 20, bytesResumed: 0, bytesMatched: 0, bytesLiteral: 0, blocksRead: 2, blocksServed: 10, reReads: 2, seconds: 3.4, error: { code: 'SC_ERR_CONNECT', message: 'connection refused' } },
      ],
    };
    const lines = formatTable(s);
    assert.match(lines[0]!, /^node\s+files\s+bytes\s+wire\s+time\s+result$/);
    assert.match(lines[1]!, /^a:1:\/d\s+5\/5\s+10\.0 MiB\s+11\.0 MiB\s+1\.25 s\s+ok$/);
    assert.match(lines[2]!, /^b:2:\/d\s+1\/5\s+1\.00 MiB\s+1\.00 MiB\s+3\.40 s\s+failed: connection refused \(3 attempts\)$/);
    assert.match(lines.join('\n'), /10 blocks read, 30 served, 2 read again/);
    assert.match(lines.at(-1)!, /1 of 2 nodes ok, 1 failed/);
    // columns line up
    assert.equal(lines[1]!.indexOf('MiB'), lines[2]!.indexOf('MiB'));
  });

  it('names nodes by their operand and shortens long names from the left', () => {
    assert.equal(nodeName(parseTarget('tcp://h:7/x')), 'tcp://h:7/x');
    assert.equal(nodeName(parseTarget('/tmp/dst')), '/tmp/dst');
    assert.equal(fit('abcdefghij', 6), '…fghij');
    assert.equal(fit('abc', 6), 'abc   ');
  });

  it('--json: per-node events carry the node, and the summary lists every node', () => {
    const lines: string[] = [];
    const out = { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream;
    const n = node(0, 'h:1:/x');
    n.attempts = 1;
    const view: FanoutView = new JsonFanoutView([n], out);
    const ev = view.attempt(n, new Accounting());
    ev.start({ source: '/s', destination: 'h:1:/x', filesTotal: 2, bytesTotal: 9, dryRun: false });
    ev.file({ path: 'f', action: 'copied', bytes: 9 });
    ev.error(new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'lost'));
    ev.error(new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'lost again'));
    view.retry(n, 500, new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'lost'));
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      parsed.map((p) => [p.event, p.type, p.node]),
      [
        ['node', 'start', 'h:1:/x'],
        ['node', 'file', 'h:1:/x'],
        ['node', 'error', 'h:1:/x'],
        ['node', 'retry', 'h:1:/x'],
      ],
      'a run-wide error is reported once per attempt',
    );
    assert.equal(parsed[1]!.path, 'f');
    assert.equal(parsed[3]!.delayMs, 500);
  });
});
