import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { CLI, collect, events, type CliResult } from '../fixtures/cli.js';
import { startSshd, type Sshd } from '../fixtures/sshd.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, snapshot, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2023-03-04T05:06:07.000Z');

/** every agent process this file started, so none outlives it whatever fails */
const launched = new Set<ChildProcess>();
/** a run that hangs fails its test instead of the whole file */
const TEST_TIMEOUT = { timeout: 120_000 };

after(() => {
  for (const p of launched) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

/** `smartcopy SRC DST1 DST2 ...` from the built CLI. */
function startFanout(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

function runFanout(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return collect(startFanout(args, env));
}

type Json = Record<string, any>;

/** stderr and the error events of --json output: what to show when a run failed unexpectedly */
function why(r: CliResult): string {
  const errs = r.stdout
    .split('\n')
    .filter((l) => l.includes('"error"'))
    .slice(0, 20);
  return `${r.stderr}\n${errs.join('\n')}`;
}

function summaryOf(r: CliResult): Json {
  const s = events(r.stdout).find((e) => e.event === 'summary');
  assert.ok(s, `no summary event:\n${r.stdout}\n${r.stderr}`);
  return s as Json;
}

interface Agent {
  port: number;
  root: string;
  host: string;
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A real `smartcopy agent --protocol tcp` process (in a network namespace when `netns` is set). */
async function launchAgent(root: string, opts: { port?: number; bind?: string; netns?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Agent> {
  const bind = opts.bind ?? '127.0.0.1';
  const agentArgs = [CLI, 'agent', '--protocol', 'tcp', '--bind', bind, '--port', String(opts.port ?? 0), '--root', root];
  const spawnOpts = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } };
  const proc = opts.netns ? spawn('ip', ['netns', 'exec', opts.netns, process.execPath, ...agentArgs], spawnOpts) : spawn(process.execPath, agentArgs, spawnOpts);
  launched.add(proc);
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    // a loaded machine starting several agents at once can be slow to get them all listening
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`agent did not start: ${err}`));
    }, 60_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /\(port (\d+)\)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}: ${err}`));
    });
  });
  return {
    port,
    root,
    host: bind,
    proc,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

function dest(a: Agent, p: string): string {
  return `${a.host}:${a.port}:${p}`;
}

function totalFileBytes(root: string): number {
  let n = 0;
  for (const v of snapshot(root).values()) if (v.type === 'file') n += v.size;
  return n;
}

describe('fan-out to several agents', () => {
  let src = '';
  let roots: string[] = [];
  let agents: Agent[] = [];
  before(async () => {
    src = tempDir('fan-src');
    writeFile(src, 'docs/readme.txt', 'fan out\n'.repeat(3000), { mode: 0o640, mtime: T0 });
    for (let i = 0; i < 30; i++) writeFile(src, `many/f${i}.txt`, `file ${i}\n`.repeat(i * 50), { mtime: T0 });
    writeFile(src, 'bin/tool', pseudoRandom(2 * 1024 * 1024 + 3, 21), { mode: 0o755, mtime: T0 });
    // chunked (over 64 MiB): chunks of one file travel on several streams per node
    writeFile(src, 'big/disk.img', pseudoRandom(66 * 1024 * 1024 + 7, 22), { mtime: T0 });
    fs.mkdirSync(path.join(src, 'empty-dir'));
    fs.symlinkSync('docs/readme.txt', path.join(src, 'link'));
    roots = [0, 1, 2, 3].map((i) => tempDir(`fan-root${i}`));
    agents = await Promise.all(roots.map((r) => launchAgent(r)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    cleanup(...roots);
    if (src) cleanup(src);
  });

  it('pushes one tree to 4 agents, every copy verifies, and the source is read once', TEST_TIMEOUT, async () => {
    const r = await runFanout([src, ...agents.map((a) => dest(a, '/data')), '--json']);
    assert.equal(r.code, 0, why(r));
    for (const root of roots) {
      assertSameTree(src, path.join(root, 'data'));
      assert.deepEqual(partFiles(root), []);
    }
    const s = summaryOf(r);
    assert.equal(s.ok, true);
    assert.equal(s.nodes.length, 4);
    for (const n of s.nodes as Json[]) {
      assert.equal(n.ok, true);
      assert.ok(n.bytesOnWire >= n.bytes, `${n.node}: the data crossed the wire`);
    }
    // each source block was read from disk once and handed to all four sessions
    assert.equal(s.cache.bytesRead, totalFileBytes(src));
    assert.equal(s.cache.blocksServed, 4 * s.cache.blocksRead);
    assert.equal(s.cache.reReads, 0);
    const nodeEvents = events(r.stdout).filter((e) => e.event === 'node') as Json[];
    for (const a of agents) {
      const name = dest(a, '/data');
      assert.ok(nodeEvents.some((e) => e.node === name && e.type === 'start'), `${name}: start event`);
      assert.ok(nodeEvents.some((e) => e.node === name && e.type === 'file'), `${name}: file events`);
      assert.ok(nodeEvents.some((e) => e.node === name && e.type === 'summary' && e.ok === true), `${name}: summary event`);
    }
  });

  it('a node killed mid-transfer is retried and reported; the others complete; a rerun finishes it', TEST_TIMEOUT, async () => {
    const victim = agents[2]!;
    const dsts = agents.map((a) => dest(a, '/slow'));
    // slow enough (per node) that the victim is surely killed mid-file
    const child = startFanout([src, ...dsts, '--json', '--retries', '1', '--bandwidth-limit', '24M']);
    const result = collect(child);
    const deadline = Date.now() + 20_000;
    while (partFiles(path.join(victim.root, 'slow')).length === 0) {
      assert.ok(Date.now() < deadline, 'the victim never started receiving');
      await new Promise((r) => setTimeout(r, 20));
    }
    await victim.stop('SIGKILL');
    const r = await result;
    assert.notEqual(r.code, 0, 'a failed node makes the run fail');
    assert.equal(r.code, 10, `connection failure exit code:\n${why(r)}`);
    const s = summaryOf(r);
    assert.equal(s.ok, false);
    const nodes = s.nodes as Json[];
    for (const [i, n] of nodes.entries()) {
      if (i === 2) continue;
      assert.equal(n.ok, true, `${n.node} completed`);
      assertSameTree(src, path.join(roots[i]!, 'slow'));
    }
    assert.equal(nodes[2]!.ok, false);
    assert.equal(nodes[2]!.attempts, 2, 'retried once');
    assert.match(nodes[2]!.error.code, /^SC_ERR_(CONNECT|CONNECTION_CLOSED|TIMEOUT)$/);
    assert.ok(events(r.stdout).some((e) => e.event === 'node' && e.type === 'retry' && e.node === dsts[2]), 'a retry event for the dead node');

    // the node comes back on the same port and root; a rerun completes it and skips the others
    agents[2] = await launchAgent(victim.root, { port: victim.port });
    const again = await runFanout([src, ...dsts, '--json', '--incremental']);
    assert.equal(again.code, 0, why(again));
    const s2 = summaryOf(again);
    for (const [i, n] of (s2.nodes as Json[]).entries()) {
      if (i === 2) assert.ok(n.filesCopied > 0, 'the dead node gets what it missed');
      else assert.equal(n.filesCopied, 0, `${n.node} was already complete`);
    }
    for (const [i, root] of roots.entries()) {
      // A whole file the killed agent was writing leaves its .part behind: the rerun writes that
      // file under a new part name (only chunked files resume). An agent-side cleanup issue,
      // not fan-out's; the chunked file's part must be gone after the rerun's commit.
      assertSameTree(src, path.join(root, 'slow'), { ignoreParts: i === 2 });
      const parts = partFiles(path.join(root, 'slow'));
      if (i === 2) assert.deepEqual(parts.filter((p) => p.startsWith('big/')), []);
      else assert.deepEqual(parts, []);
    }
  });

  it('--delta: nodes holding different old versions each get a delta of their own', TEST_TIMEOUT, async () => {
    const size = 8 * 1024 * 1024 + 1234;
    const fresh = pseudoRandom(size, 31);
    const work = tempDir('fan-delta');
    try {
      writeFile(work, 'v/data.bin', fresh, { mtime: T0 });
      // three nodes with different stale copies, one without any
      for (let i = 0; i < 3; i++) {
        const old = Buffer.from(fresh);
        for (let k = 0; k < 8; k++) pseudoRandom(4096, 100 * i + k).copy(old, ((k * 1_000_003 + i * 333_333) % (size - 4096)) >>> 0);
        if (i === 1) pseudoRandom(300_000, 7).copy(old, 1_000_000);
        writeFile(roots[i]!, 'delta/data.bin', i === 2 ? Buffer.concat([old.subarray(0, 5_000_000), old.subarray(5_200_000)]) : old);
      }
      const r = await runFanout([path.join(work, 'v') + '/', ...agents.map((a) => dest(a, '/delta')), '--delta', '--json']);
      assert.equal(r.code, 0, why(r));
      const nodes = summaryOf(r).nodes as Json[];
      for (let i = 0; i < 4; i++) {
        assert.ok(fs.readFileSync(path.join(roots[i]!, 'delta/data.bin')).equals(fresh), `node ${i} holds the new version`);
        if (i < 3) {
          assert.ok(nodes[i]!.bytesMatched > size * 0.8, `node ${i} rebuilt most of it from its own copy (${nodes[i]!.bytesMatched})`);
          assert.ok(nodes[i]!.bytesLiteral < size * 0.1, `node ${i} literals ${nodes[i]!.bytesLiteral}`);
        } else {
          assert.equal(nodes[i]!.bytesMatched, 0, 'the node without a copy gets the whole file');
        }
      }
      assert.notEqual(nodes[0]!.bytesLiteral, nodes[1]!.bytesLiteral, 'each node got its own delta');
    } finally {
      cleanup(work);
    }
  });
});

/** Root, `ip` available, and allowed to make namespaces here: else the reason to skip. */
function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return '`ip` (iproute2) is not installed';
  return undefined;
}

const TOKEN_ENV = { SMARTCOPY_TOKEN: 'fan-out-test-token' };

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
}

describe('fan-out across network namespaces (one agent per namespace, veth pairs)', () => {
  const skipReason = netnsUnavailable();
  if (skipReason) console.log(`# skipping the network-namespace fan-out test: ${skipReason}`);
  const N = 4;
  const tag = `${process.pid % 10000}`;
  const third = (process.pid % 50) * 5;
  const nsName = (i: number): string => `scfo${tag}n${i}`;
  const hostVeth = (i: number): string => `scf${tag}h${i}`;
  const addr = (i: number, side: 1 | 2): string => `10.231.${third + i}.${side}`;
  let src: string;
  let roots: string[] = [];
  let agents: Agent[] = [];
  let made = 0;
  let setupError: string | undefined;

  before(async () => {
    if (skipReason) return;
    src = tempDir('fan-ns-src');
    for (let i = 0; i < 20; i++) writeFile(src, `d/f${i}.bin`, pseudoRandom(300_000 + i * 7, 50 + i), { mtime: T0 });
    writeFile(src, 'big.bin', pseudoRandom(9 * 1024 * 1024 + 5, 60), { mtime: T0 });
    try {
      for (let i = 0; i < N; i++) {
        sh('ip', ['netns', 'add', nsName(i)]);
        made = i + 1;
        sh('ip', ['link', 'add', hostVeth(i), 'type', 'veth', 'peer', 'name', `scf${tag}p${i}`]);
        sh('ip', ['link', 'set', `scf${tag}p${i}`, 'netns', nsName(i)]);
        sh('ip', ['addr', 'add', `${addr(i, 1)}/30`, 'dev', hostVeth(i)]);
        sh('ip', ['link', 'set', hostVeth(i), 'up']);
        sh('ip', ['-n', nsName(i), 'addr', 'add', `${addr(i, 2)}/30`, 'dev', `scf${tag}p${i}`]);
        sh('ip', ['-n', nsName(i), 'link', 'set', `scf${tag}p${i}`, 'up']);
        sh('ip', ['-n', nsName(i), 'link', 'set', 'lo', 'up']);
      }
      // the last node sits behind a slow link (host -> node direction carries the data)
      sh('tc', ['qdisc', 'add', 'dev', hostVeth(N - 1), 'root', 'tbf', 'rate', '40mbit', 'burst', '64kb', 'latency', '200ms']);
    } catch (e) {
      setupError = (e as Error).message;
      return;
    }
    roots = Array.from({ length: N }, (_, i) => tempDir(`fan-ns-root${i}`));
    // agents off loopback require a token; the client proves it holds it to each of them
    agents = await Promise.all(roots.map((r, i) => launchAgent(r, { bind: addr(i, 2), netns: nsName(i), env: TOKEN_ENV })));
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    for (let i = 0; i < made; i++) {
      spawnSync('ip', ['link', 'del', hostVeth(i)]);
      spawnSync('ip', ['netns', 'del', nsName(i)]);
    }
    if (src) cleanup(src, ...roots);
  });

  it('pushes to an agent in each namespace; a slow link does not hold back the others', { ...TEST_TIMEOUT, skip: skipReason }, async () => {
    // root with iproute2 (CI installs it) must be able to make namespaces: a failure here is a failure
    if (setupError) assert.fail(`could not set up the network namespaces: ${setupError}`);
    const dsts = agents.map((a) => dest(a, '/data'));
    const r = await runFanout([src, ...dsts, '--json'], TOKEN_ENV);
    assert.equal(r.code, 0, why(r));
    for (const root of roots) assertSameTree(src, path.join(root, 'data'));
    const s = summaryOf(r);
    assert.equal(s.cache.bytesRead, totalFileBytes(src), 'read once for all nodes');
    // every fast node finished before the node behind the slow link: nobody waited for it
    const done = events(r.stdout).filter((e) => e.event === 'node' && e.type === 'summary').map((e) => e.node as string);
    assert.equal(done.length, N);
    assert.equal(done[N - 1], dsts[N - 1], `order of completion: ${done.join(', ')}`);
  });
});

describe('fan-out across transports: a TCP agent, a QUIC agent and an SSH --use-agent node in one run', () => {
  let src = '';
  let home = '';
  let roots: string[] = [];
  let tcp: RunningAgent;
  let quic: RunningAgent;
  let sshd: Sshd;
  before(async () => {
    src = tempDir('fanx-src');
    home = tempDir('fanx-home');
    writeFile(src, 'a/readme.txt', 'mixed fan-out\n'.repeat(2000), { mtime: T0 });
    writeFile(src, 'b/blob.bin', pseudoRandom(3 * 1024 * 1024 + 5, 41), { mode: 0o600, mtime: T0 });
    for (let i = 0; i < 12; i++) writeFile(src, `c/f${i}`, `n${i}`.repeat(i * 100 + 1), { mtime: T0 });
    roots = [0, 1, 2].map((i) => tempDir(`fanx-root${i}`));
    [tcp, quic, sshd] = await Promise.all([startAgent(roots[0]!), startAgent(roots[1]!, [], { HOME: home }, 'quic'), startSshd()]);
  });
  after(async () => {
    await Promise.all([tcp?.stop(), quic?.stop(), sshd?.stop()]);
    cleanup(src, home, ...roots);
  });

  it('every node gets the tree and the source is read once', TEST_TIMEOUT, async () => {
    const fp = /certificate (SHA256:\S+)/.exec(quic.ready)![1]!;
    const sshDst = path.join(roots[2]!, 'data');
    const r = await runFanout(
      [
        src,
        `127.0.0.1:${tcp.port}:/data`,
        `quic://127.0.0.1:${quic.port}/data`,
        `${sshd.alias}:${sshDst}`,
        '--ssh',
        '--ssh-config',
        sshd.sshConfig,
        '--use-agent',
        '--remote-cmd',
        `${process.execPath} ${CLI}`,
        '--quic-fingerprint',
        fp,
        '--json',
      ],
      { HOME: home, SSH_AUTH_SOCK: '' },
    );
    assert.equal(r.code, 0, why(r));
    for (const root of roots) assertSameTree(src, path.join(root, 'data'));
    const s = summaryOf(r);
    assert.equal(s.nodes.length, 3);
    assert.equal(s.cache.bytesRead, totalFileBytes(src));
    assert.equal(s.cache.blocksServed, 3 * s.cache.blocksRead);
  });
});
