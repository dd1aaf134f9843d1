import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import {
  FaultProxy,
  agentAlive,
  clip,
  isPartName,
  listFiles,
  runCliBounded,
  sha256,
  sha256File,
  type BoundedResult,
  type Direction,
  type FaultMode,
} from '../fixtures/faults.js';
import { cleanup, pseudoRandom, snapshot, tempDir, writeFile } from '../fixtures/tree.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const T_OLD = new Date('2021-03-04T05:06:07.000Z');
const T_NEW = new Date('2024-01-02T03:04:05.000Z');
/** A faulted run must end well within this; past it the client is killed and the test fails. */
const CLI_BOUND_MS = 45_000;
/** Exit codes a run broken by a network fault may end with (README "Exit codes"). */
const FAULT_EXITS = new Set([0, 10, 23, 30]);

/** Expected content of one relative path: its old and/or new version (sha256). */
interface Versions {
  old?: string;
  new?: string;
}

interface Trees {
  /** the old destination contents, copied into each run's destination */
  oldDir: string;
  /** the new contents (the source) */
  newDir: string;
  versions: Map<string, Versions>;
}

function put(dir: string, rel: string, data: Buffer, mtime: Date, versions: Map<string, Versions>, which: keyof Versions): void {
  writeFile(dir, rel, data, { mtime, mode: 0o644 });
  const v = versions.get(rel) ?? {};
  v[which] = sha256(data);
  versions.set(rel, v);
}

/**
 * Old and new versions of one tree: a file above the 64 MiB chunk threshold (so it goes as
 * several 32 MiB chunks over several streams), mid-size files (whole-file .part on disk), many
 * small ones (kept in memory until commit), files only the new side has, and files only the old
 * side has (removed by --delete-extra).
 */
function buildTrees(): Trees {
  const oldDir = tempDir('fault-old');
  const newDir = tempDir('fault-new');
  const versions = new Map<string, Versions>();
  put(oldDir, 'big/disk.img', pseudoRandom(70 * MiB + 1, 101), T_OLD, versions, 'old');
  put(newDir, 'big/disk.img', pseudoRandom(72 * MiB + 7, 201), T_NEW, versions, 'new');
  put(oldDir, 'mid/a.bin', pseudoRandom(3 * MiB, 102), T_OLD, versions, 'old');
  put(newDir, 'mid/a.bin', pseudoRandom(5 * MiB + 3, 202), T_NEW, versions, 'new');
  put(oldDir, 'mid/b.bin', pseudoRandom(600 * KiB, 103), T_OLD, versions, 'old');
  put(newDir, 'mid/b.bin', pseudoRandom(200 * KiB + 1, 203), T_NEW, versions, 'new');
  put(oldDir, 'mid/c.bin', pseudoRandom(MiB, 104), T_OLD, versions, 'old');
  put(newDir, 'mid/c.bin', pseudoRandom(MiB, 204), T_NEW, versions, 'new');
  for (let i = 0; i < 160; i++) {
    const rel = `small/d${i % 8}/f${i}.txt`;
    // same size on both sides for every third file: only the content tells them apart
    const oldSize = 1 + ((i * 53) % (8 * KiB));
    const newSize = i % 3 === 0 ? oldSize : 1 + ((i * 97) % (8 * KiB));
    put(oldDir, rel, pseudoRandom(oldSize, 1000 + i), T_OLD, versions, 'old');
    put(newDir, rel, pseudoRandom(newSize, 2000 + i), T_NEW, versions, 'new');
  }
  put(newDir, 'fresh/new.bin', pseudoRandom(2 * MiB + 5, 301), T_NEW, versions, 'new');
  for (let i = 0; i < 20; i++) put(newDir, `fresh/n/${i}.txt`, pseudoRandom(100 + i * 37, 400 + i), T_NEW, versions, 'new');
  put(oldDir, 'stale/gone.txt', pseudoRandom(5000, 501), T_OLD, versions, 'old');
  put(oldDir, 'stale-top.bin', pseudoRandom(300 * KiB, 502), T_OLD, versions, 'old');
  return { oldDir, newDir, versions };
}

function copyTree(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, preserveTimestamps: true });
}

/**
 * After a faulted run: every file under a final name is byte-identical to its old or its new
 * version; files that existed stay (old or new); new-only files are absent or new; old-only
 * files are old, or absent when the run deleted extras. Temp names may remain.
 */
function assertOldOrNew(dst: string, t: Trees, deleteExtra: boolean, label: string): { parts: string[]; newCount: number } {
  const files = listFiles(dst);
  const parts: string[] = [];
  let newCount = 0;
  for (const [rel, abs] of files) {
    if (isPartName(path.basename(rel))) {
      parts.push(rel);
      continue;
    }
    const v = t.versions.get(rel);
    assert.ok(v, `${label}: unexpected file ${rel} under a final name`);
    assert.ok(fs.lstatSync(abs).isFile(), `${label}: ${rel} is not a regular file`);
    const h = sha256File(abs);
    if (h === v.new) newCount++;
    else assert.equal(h, v.old, `${label}: ${rel} (${fs.statSync(abs).size} bytes) is neither its old nor its new version: a partial file under a final name`);
  }
  for (const [rel, v] of t.versions) {
    if (files.has(rel)) continue;
    if (v.old !== undefined && v.new !== undefined) assert.fail(`${label}: ${rel} existed before the run and is gone`);
    if (v.new === undefined && !deleteExtra) assert.fail(`${label}: old-only ${rel} was removed without --delete-extra`);
  }
  return { parts, newCount };
}

/** After a clean run: the destination is the source, exactly (no temp files left either). */
function assertMirror(src: string, dst: string, label: string): void {
  const a = snapshot(src);
  const b = snapshot(dst);
  const leftovers = [...b.keys()].filter((k) => isPartName(path.basename(k)));
  assert.deepEqual(leftovers, [], `${label}: temporary files left after a complete run`);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${label}: entries differ`);
  for (const [k, n] of a) {
    const m = b.get(k)!;
    assert.equal(m.type, n.type, `${label}: ${k} type`);
    assert.equal(m.sha, n.sha, `${label}: ${k} content`);
    if (n.type === 'file') {
      assert.equal(m.mode, n.mode, `${label}: ${k} mode`);
      assert.equal(m.mtimeMs, n.mtimeMs, `${label}: ${k} mtime`);
    }
  }
}

function describeRun(r: BoundedResult, proxy: FaultProxy): string {
  return `exit ${r.code} (signal ${r.signal}) after ${r.ms} ms\nstderr:\n${clip(r.stderr)}\nproxy:\n${proxy.describe()}`;
}

/** The client ended on its own, with a documented exit code and one line per error. */
function assertCleanFailure(r: BoundedResult, proxy: FaultProxy, label: string): void {
  const what = `${label}: ${describeRun(r, proxy)}`;
  assert.ok(!r.timedOut, `${label}: the client hung and was killed after ${CLI_BOUND_MS} ms\n${what}`);
  assert.equal(r.signal, null, what);
  assert.ok(FAULT_EXITS.has(r.code!), `${label}: exit code ${r.code} is not one a broken connection should give\n${what}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${label}: stack trace on stderr\n${what}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  if (r.code !== 0) assert.ok(lines.length >= 1, `${label}: failed without saying why\n${what}`);
  for (const l of lines) assert.match(l, /^smartcopy: \S/, `${label}: stderr line is not a one-line error\n${what}`);
}

interface FaultCase {
  name: string;
  seed: number;
  modes: FaultMode[];
  directions?: Direction[];
  upBytes?: [number, number];
  downBytes?: [number, number];
  faultRate?: number;
  only?: number[];
  deleteExtra?: boolean;
  args?: string[];
}

// Byte ranges follow the traffic: a push sends tens of MiB up each connection (a 32 MiB chunk,
// files) and only results down (hundreds of bytes to a few KiB); a pull sends everything down.
const PUSH_CASES: FaultCase[] = [
  { name: 'kill, client to agent, anywhere in the data', seed: 11, modes: ['kill'], directions: ['up'], upBytes: [64 * KiB, 30 * MiB] },
  { name: 'kill, client to agent, early', seed: 12, modes: ['kill'], directions: ['up'], upBytes: [0, 256 * KiB], faultRate: 0.5 },
  { name: 'kill a data stream, agent to client (results)', seed: 13, modes: ['kill'], directions: ['down'], downBytes: [100, 1500], only: [1, 2, 3] },
  { name: 'truncate data streams, client to agent', seed: 14, modes: ['truncate'], directions: ['up'], upBytes: [MiB, 30 * MiB], only: [1, 2, 3] },
  { name: 'truncate the first stream during handshake or listing', seed: 15, modes: ['truncate'], directions: ['down'], downBytes: [0, 400], only: [0] },
  { name: 'drop data streams either way, --delete-extra', seed: 25, modes: ['drop'], upBytes: [256 * KiB, 6 * MiB], downBytes: [100, 300], only: [1, 2, 3], deleteExtra: true },
  { name: 'mixed faults with delays, --delete-extra', seed: 25, modes: ['delay', 'kill', 'truncate', 'drop', 'pass'], upBytes: [0, 36 * MiB], downBytes: [0, 1500], deleteExtra: true },
  { name: 'kill one stream of 8 with --compress', seed: 21, modes: ['kill'], directions: ['up'], upBytes: [MiB, 9 * MiB], faultRate: 0.25, only: [1, 2, 3, 4, 5, 6, 7], args: ['--streams', '8', '--compress'] },
];

const PULL_CASES: FaultCase[] = [
  { name: 'kill, agent to client, anywhere in the data', seed: 21, modes: ['kill'], directions: ['down'], downBytes: [MiB, 80 * MiB] },
  { name: 'truncate, drop or kill either way, --delete-extra', seed: 22, modes: ['truncate', 'drop', 'kill'], upBytes: [0, 16 * KiB], downBytes: [MiB, 80 * MiB], deleteExtra: true },
  { name: 'kill, client to agent (requests)', seed: 23, modes: ['kill'], directions: ['up'], upBytes: [0, 16 * KiB] },
];

describe('fault injection: old or new, never partial; a rerun completes', () => {
  let t: Trees;
  let root: string;
  let work: string;
  let agent: RunningAgent;

  before(async () => {
    t = buildTrees();
    root = tempDir('fault-root');
    work = tempDir('fault-work');
    copyTree(t.newDir, path.join(root, 'pullsrc'));
    agent = await startAgent(root);
  });
  after(async () => {
    await agent?.stop();
    cleanup(t.oldDir, t.newDir, root, work);
  });

  /** what the faults did over all cases: the suite is only meaningful if they struck mid-transfer */
  const stats = { cases: 0, struck: 0, mixed: 0, withParts: 0 };

  const runCase = async (tc: TestContext, c: FaultCase, kind: 'push' | 'pull', i: number): Promise<void> => {
    const label = `${kind} "${c.name}" (seed ${c.seed})`;
    // An earlier case that killed the agent has failed already; the cases stay independent.
    if (!agentAlive(agent)) agent = await startAgent(root);
    // a fresh destination per case, so nothing carries over between cases
    const rel = `${kind}-${i}`;
    const dst = kind === 'push' ? path.join(root, rel) : path.join(work, rel);
    copyTree(t.oldDir, dst);
    const extra = [...(c.args ?? []), ...(c.deleteExtra ? ['--delete-extra'] : [])];
    const proxy = await FaultProxy.start({
      targetPort: agent.port,
      seed: c.seed,
      modes: c.modes,
      directions: c.directions,
      upBytes: c.upBytes,
      downBytes: c.downBytes,
      faultRate: c.faultRate,
      only: c.only,
    });
    let r: BoundedResult;
    try {
      const args = kind === 'push' ? [t.newDir, `127.0.0.1:${proxy.port}:/${rel}`] : [`127.0.0.1:${proxy.port}:/pullsrc`, dst];
      r = await runCliBounded([...args, ...extra], CLI_BOUND_MS);
    } finally {
      await proxy.close();
    }
    // Every property is checked even when an earlier one fails, so one report shows them all.
    const problems: string[] = [];
    const check = (fn: () => void): void => {
      try {
        fn();
      } catch (e) {
        problems.push((e as Error).message);
      }
    };
    stats.cases++;
    if (proxy.faults > 0) stats.struck++;
    check(() => {
      const { parts, newCount } = assertOldOrNew(dst, t, c.deleteExtra ?? false, `${label} after the fault`);
      const total = [...t.versions.values()].filter((v) => v.new).length;
      if (newCount > 0 && newCount < total) stats.mixed++;
      if (parts.length > 0) stats.withParts++;
      tc.diagnostic(`exit ${r.code}, ${proxy.faults} of ${proxy.connections} connections faulted, ${newCount} of ${total} files new, ${parts.length} temp files left`);
      if (r.code === 0) {
        // a run that reports success must have done all of it
        assert.deepEqual(parts, [], `${label}: exit 0 but temp files remain`);
        if (c.deleteExtra) assertMirror(t.newDir, dst, `${label}: exit 0`);
        else for (const [f, v] of t.versions) if (v.new) assert.equal(sha256File(path.join(dst, f)), v.new, `${label}: exit 0 but ${f} is not new`);
      }
    });
    check(() => assertCleanFailure(r, proxy, label));
    check(() => assert.ok(agentAlive(agent), `${label}: the agent died during the faulted run\n${clip(agent.stderr())}`));
    if (!agentAlive(agent)) agent = await startAgent(root);

    // The same run without faults completes and leaves an exact mirror.
    const args = kind === 'push' ? [t.newDir, `127.0.0.1:${agent.port}:/${rel}`] : [`127.0.0.1:${agent.port}:/pullsrc`, dst];
    const again = await runCliBounded([...args, ...(c.args ?? []), '--delete-extra'], CLI_BOUND_MS);
    check(() => {
      assert.ok(!again.timedOut, `${label}: the clean rerun hung`);
      assert.equal(again.code, 0, `${label}: the clean rerun failed\n${clip(again.stderr)}`);
      assertMirror(t.newDir, dst, `${label}: after the clean rerun`);
    });
    check(() => assert.ok(agentAlive(agent), `${label}: the agent died during the clean rerun\n${clip(agent.stderr())}`));
    assert.deepEqual(problems, [], `${problems.join('\n\n')}\n\nfaulted run: ${describeRun(r, proxy)}`);
    cleanup(dst);
  };

  PUSH_CASES.forEach((c, i) => it(`push through a faulty link: ${c.name}`, (tc) => runCase(tc, c, 'push', i)));
  PULL_CASES.forEach((c, i) => it(`pull through a faulty link: ${c.name}`, (tc) => runCase(tc, c, 'pull', i)));

  it('the faults struck in the middle of transfers', (tc) => {
    const n = PUSH_CASES.length + PULL_CASES.length;
    tc.diagnostic(`${stats.struck} of ${stats.cases} runs faulted, ${stats.mixed} cut between files, ${stats.withParts} left temporary files`);
    assert.equal(stats.cases, n, 'every case ran');
    assert.ok(stats.struck >= n / 2, `faults struck in only ${stats.struck} of ${n} runs: the byte ranges miss the traffic`);
    assert.ok(stats.mixed >= 1, 'no run was cut between files (some new, some old): the faults hit only the edges');
  });

  it('the agent is still serving afterwards', async () => {
    assert.ok(agentAlive(agent), `the agent died:\n${clip(agent.stderr())}`);
    const dst = path.join(work, 'final');
    const r = await runCliBounded([`127.0.0.1:${agent.port}:/pullsrc`, dst], CLI_BOUND_MS);
    assert.equal(r.code, 0, clip(r.stderr));
    assertMirror(t.newDir, dst, 'final pull');
    assert.ok(agentAlive(agent));
  });
});
