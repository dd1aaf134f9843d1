/**
 * WebTransport end to end (HTTP/2 over TLS: the variant that passes firewalls dropping UDP):
 * a real `smartcopy agent --protocol webtransport` from the built CLI, pushes and pulls far
 * larger than the session and stream windows, and the agent's key checked on first use and
 * when pinned.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { runCli, summary } from '../fixtures/cli.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2024-05-06T07:08:09.000Z');

describe('WebTransport agent: push, pull and identity', () => {
  let src: string;
  let root: string;
  let work: string;
  let clientHome: string;
  let agentHome: string;
  let agent: RunningAgent;
  const client = (args: string[]) => runCli(args, { env: { ...process.env, HOME: clientHome } });
  const url = (p: string): string => `wt://127.0.0.1:${agent.port}${p}`;
  const keyOf = (a: RunningAgent): string => /public key (SHA256:\S+)/.exec(a.ready)![1]!;

  before(async () => {
    src = tempDir('wt-src');
    root = tempDir('wt-root');
    work = tempDir('wt-work');
    clientHome = tempDir('wt-client-home');
    agentHome = tempDir('wt-agent-home');
    // 96 MiB of data: many times the 64 MiB session and 4 MiB stream windows
    writeFile(src, 'big/one.bin', pseudoRandom(70 * 1024 * 1024 + 11, 51), { mtime: T0 });
    writeFile(src, 'big/two.bin', pseudoRandom(26 * 1024 * 1024 + 13, 52), { mtime: T0 });
    for (let i = 0; i < 25; i++) writeFile(src, `small/s${i}`, `wt ${i}\n`.repeat(i * 7 + 1), { mtime: T0 });
    agent = await startAgent(root, [], { HOME: agentHome }, 'webtransport');
  });
  after(async () => {
    await agent.stop();
    cleanup(src, root, work, clientHome, agentHome);
  });

  it('pushes over 4 streams of one session and records the agent key on first use', async () => {
    const r = await client([src, url('/backup'), '--streams', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, path.join(root, 'backup'));
    assert.deepEqual(partFiles(root), []);
    assert.ok((summary(r.stdout).bytesOnWire as number) >= (summary(r.stdout).bytes as number));
    const known = fs.readFileSync(path.join(clientHome, '.smartcopy/known_agents'), 'utf8').trim();
    assert.equal(known, `wt://127.0.0.1:${agent.port} ${keyOf(agent)}`);
    assert.equal(fs.statSync(path.join(agentHome, '.smartcopy/webtransport-key.pem')).mode & 0o777, 0o600);
  });

  it('pulls it back (https:// with --webtransport)', async () => {
    const dst = path.join(work, 'pulled');
    const r = await client([`https://127.0.0.1:${agent.port}/backup`, dst, '--webtransport']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst);
  });

  it('a restarted agent keeps its key; a pinned wrong key is refused', async () => {
    const port = agent.port;
    const before = keyOf(agent);
    await agent.stop();
    agent = await startAgent(root, ['--port', String(port)], { HOME: agentHome }, 'webtransport');
    assert.equal(keyOf(agent), before, 'the renewed certificate carries the same key');
    const again = await client([src, url('/backup'), '--incremental', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(summary(again.stdout).filesCopied, 0);
    const wrong = await client([src, url('/wrong'), '--quic-fingerprint', `SHA256:${'B'.repeat(43)}`]);
    assert.equal(wrong.code, 5, wrong.stderr);
    assert.match(wrong.stderr, /not the pinned/);
    assert.equal(fs.existsSync(path.join(root, 'wrong')), false);
  });
});
