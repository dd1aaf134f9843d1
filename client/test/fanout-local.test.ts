import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExitCode } from '@smartcopy/protocol';
import { resolveConfig, type ParsedCopyArgs } from '../src/cli/options.js';
import { fanout } from '../src/fanout/index.js';
import type { RunIO } from '../src/run.js';
import { parseTarget, type Target } from '../src/targets.js';

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Relative path -> content hash ('dir' for directories) of a tree. */
function tree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        out.set(r, 'dir');
        walk(r);
      } else out.set(r, sha(path.join(root, r)));
    }
  };
  walk('');
  return out;
}

function totalSize(root: string): number {
  let n = 0;
  for (const e of fs.readdirSync(root, { withFileTypes: true, recursive: true })) if (e.isFile()) n += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
  return n;
}

function capture(): { io: RunIO; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const io = {
    stdout: { write: (s: string) => ((out += s), true), isTTY: false },
    stderr: { write: (s: string) => ((err += s), true), isTTY: false },
  } as unknown as RunIO;
  return { io, out: () => out, err: () => err };
}

async function run(
  args: Partial<ParsedCopyArgs> & { source: string; destinations: string[] },
  signal = new AbortController().signal,
): Promise<{ code: number; events: Array<Record<string, any>>; err: string; out: string }> {
  const cfg = resolveConfig(args as ParsedCopyArgs, []);
  const c = capture();
  const src = parseTarget(cfg.source) as Extract<Target, { kind: 'local' }>;
  const code = await fanout(cfg, src, cfg.destinations.map((d) => parseTarget(d)), c.io, signal);
  const events = args.json ? c.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>) : [];
  return { code, events, err: c.err(), out: c.out() };
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('fan-out to local directories (in process)', () => {
  let work: string;
  let src: string;
  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'sc-fanout-'));
    src = path.join(work, 'src');
    fs.mkdirSync(path.join(src, 'sub/deeper'), { recursive: true });
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(src, 'sub', `small-${i}.txt`), `small file ${i}\n`.repeat(i * 10));
    const big = Buffer.allocUnsafe(5 * 1024 * 1024 + 77);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, Math.min(i, big.length - 4));
    fs.writeFileSync(path.join(src, 'sub/deeper/big.bin'), big);
    fs.writeFileSync(path.join(src, 'empty'), '');
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it('copies the tree to every destination, reading each block once', async () => {
    const dests = [1, 2, 3].map((i) => path.join(work, `d${i}`));
    // --no-kernel-copy: local copies stream their bytes like remote ones, through the shared blocks
    const r = await run({ source: src, destinations: dests, json: true, 'kernel-copy': false });
    assert.equal(r.code, 0, JSON.stringify(r.events.filter((e) => e.type === 'error' || e.event === 'error')));
    const want = tree(src);
    for (const d of dests) assert.deepEqual(tree(d), want, d);
    const s = r.events.find((e) => e.event === 'summary')!;
    assert.equal(s.ok, true);
    assert.equal(s.nodes.length, 3);
    for (const n of s.nodes) {
      assert.equal(n.ok, true);
      assert.equal(n.filesCopied, 42);
    }
    assert.ok(s.cache.blocksRead > 0);
    assert.equal(s.cache.blocksServed, 3 * s.cache.blocksRead, 'every block read once, served to all three');
    assert.equal(s.cache.reReads, 0);
    assert.equal(s.cache.bytesRead, totalSize(src), 'the source was read exactly once');
    const nodeEvents = r.events.filter((e) => e.event === 'node');
    for (const d of dests) {
      assert.ok(nodeEvents.some((e) => e.node === d && e.type === 'start'));
      assert.equal(nodeEvents.filter((e) => e.node === d && e.type === 'file' && e.action === 'copied').length, 42);
      assert.ok(nodeEvents.some((e) => e.node === d && e.type === 'summary' && e.ok === true));
    }
  });

  it('plans per node: --incremental sends only what each node lacks', async () => {
    const dests = [4, 5].map((i) => path.join(work, `d${i}`));
    // d4 already has everything, d5 has nothing
    assert.equal((await run({ source: src, destinations: [dests[0]!] })).code, 0);
    const r = await run({ source: src, destinations: dests, json: true, incremental: true, 'kernel-copy': false });
    assert.equal(r.code, 0);
    const s = r.events.find((e) => e.event === 'summary')!;
    assert.equal(s.nodes[0].filesCopied, 0);
    assert.equal(s.nodes[1].filesCopied, 42);
    assert.equal(s.cache.blocksServed, s.cache.blocksRead, 'blocks only one node needs are not kept for the other');
    assert.deepEqual(tree(dests[1]!), tree(src));
  });

  it('an unreachable node is retried, then reported; the others finish; the exit code says why', async () => {
    const port = await closedPort();
    const good = path.join(work, 'd6');
    const bad = `127.0.0.1:${port}:/x`;
    const r = await run({ source: src, destinations: [good, bad], json: true, retries: 1, 'kernel-copy': false });
    assert.equal(r.code, ExitCode.SOCKET_IO);
    assert.deepEqual(tree(good), tree(src));
    const retries = r.events.filter((e) => e.event === 'node' && e.type === 'retry');
    assert.equal(retries.length, 1);
    assert.equal(retries[0]!.node, bad);
    const s = r.events.find((e) => e.event === 'summary')!;
    assert.equal(s.ok, false);
    assert.equal(s.nodes[0].ok, true);
    assert.equal(s.nodes[1].ok, false);
    assert.equal(s.nodes[1].attempts, 2);
    assert.equal(s.nodes[1].error.code, 'SC_ERR_CONNECT');
  });

  it('prints a per-node table without --json', async () => {
    const port = await closedPort();
    const good = path.join(work, 'd7');
    const r = await run({ source: src, destinations: [good, `127.0.0.1:${port}:/x`], retries: 0 });
    assert.equal(r.code, ExitCode.SOCKET_IO);
    const lines = r.err.split('\n');
    const head = lines.findIndex((l) => /^node\s+files\s+bytes\s+wire\s+time\s+result/.test(l));
    assert.ok(head >= 0, r.err);
    assert.match(lines[head + 1]!, new RegExp(`^${good.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\s+42/42 .* ok$`));
    assert.match(lines[head + 2]!, /^127\.0\.0\.1:\d+:\/x\s+0\/0 .* failed: /);
    assert.match(r.err, /1 of 2 nodes ok, 1 failed/);
    assert.equal(r.out, '', 'stdout stays free for -v file lines');
  });

  it('a missing source fails the whole fan-out once, before any node is contacted', async () => {
    const r = await run({ source: path.join(work, 'nope'), destinations: [path.join(work, 'd8'), path.join(work, 'd9')], json: true });
    assert.equal(r.code, ExitCode.FILE_SELECTION);
    assert.equal(r.events.filter((e) => e.event === 'error').length, 1);
    const s = r.events.find((e) => e.event === 'summary')!;
    assert.equal(s.error.code, 'SC_ERR_SOURCE_NOT_FOUND');
    assert.equal(s.nodes.length, 2);
    assert.ok(!fs.existsSync(path.join(work, 'd8')));
  });

  it('--dry-run plans every node and writes nothing', async () => {
    const dests = [11, 12].map((i) => path.join(work, `d${i}`));
    const r = await run({ source: src, destinations: dests, json: true, 'dry-run': true });
    assert.equal(r.code, 0);
    for (const d of dests) assert.ok(!fs.existsSync(d));
    const s = r.events.find((e) => e.event === 'summary')!;
    assert.equal(s.dryRun, true);
    for (const n of s.nodes) assert.equal(n.filesCopied, 42);
    assert.equal(s.cache.blocksRead, 0);
  });

  it('an interrupted fan-out stops every node and exits with the interrupt code', async () => {
    const dests = [13, 14].map((i) => path.join(work, `d${i}`));
    const ac = new AbortController();
    // slow: 5 MiB at 1 MiB/s per node, so the abort lands mid-transfer
    const p = run({ source: src, destinations: dests, json: true, 'kernel-copy': false, 'bandwidth-limit': '1M' }, ac.signal);
    setTimeout(() => ac.abort(), 300);
    const r = await p;
    assert.equal(r.code, ExitCode.INTERRUPTED);
    const s = r.events.find((e) => e.event === 'summary')!;
    for (const n of s.nodes) {
      assert.equal(n.ok, false);
      assert.equal(n.exitCode, ExitCode.INTERRUPTED);
      assert.equal(n.attempts, 1, 'an interrupt is not retried');
    }
    assert.ok(!fs.existsSync(path.join(dests[0]!, 'sub/deeper/big.bin')), 'the big file was not put in place');
  });

  it('refuses the same destination twice', async () => {
    const d = path.join(work, 'd10');
    const r = await run({ source: src, destinations: [d, `${d}/../d10`], json: true });
    assert.equal(r.code, ExitCode.USAGE);
  });
});
