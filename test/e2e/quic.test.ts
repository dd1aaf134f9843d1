/**
 * QUIC end to end: real `smartcopy agent --protocol quic` processes from the built CLI on
 * 127.0.0.1, the CLI pushing and pulling through them, and the agent's identity checked by
 * fingerprint (pinned, or recorded on first use). HOME is a temp dir: the agents' certificates
 * and the client's known_agents live there.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { runCli, summary } from '../fixtures/cli.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2024-01-02T03:04:05.000Z');

function buildSource(root: string): void {
  writeFile(root, 'docs/readme.txt', 'hello over quic\n'.repeat(3000), { mode: 0o640, mtime: T0 });
  writeFile(root, 'docs/empty.txt', '', { mtime: T0 });
  writeFile(root, 'bin/tool', pseudoRandom(5 * 1024 * 1024 + 3, 31), { mode: 0o755, mtime: T0 });
  writeFile(root, 'big/disk.img', pseudoRandom(68 * 1024 * 1024 + 1, 32), { mtime: T0 });
  for (let i = 0; i < 30; i++) writeFile(root, `many/f${i}.txt`, `quic ${i}\n`.repeat(i + 2), { mtime: T0 });
  fs.symlinkSync('docs/readme.txt', path.join(root, 'link'));
}

const fingerprintOf = (a: RunningAgent): string => /certificate (SHA256:\S+)/.exec(a.ready)![1]!;

describe('QUIC agent: push, pull and identity', () => {
  let src: string;
  let root: string;
  let work: string;
  let clientHome: string;
  let agentHome: string;
  let agent: RunningAgent;
  const client = (args: string[], home = clientHome) => runCli(args, { env: { ...process.env, HOME: home } });
  const url = (p: string, port = agent.port): string => `quic://127.0.0.1:${port}${p}`;

  before(async () => {
    src = tempDir('quic-src');
    root = tempDir('quic-root');
    work = tempDir('quic-work');
    clientHome = tempDir('quic-client-home');
    agentHome = tempDir('quic-agent-home');
    buildSource(src);
    agent = await startAgent(root, [], { HOME: agentHome }, 'quic');
  });
  after(async () => {
    await agent.stop();
    cleanup(src, root, work, clientHome, agentHome);
  });

  it('the agent makes its certificate once, private, and names its fingerprint', () => {
    const dir = path.join(agentHome, '.smartcopy');
    assert.equal(fs.statSync(path.join(dir, 'quic-key.pem')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(dir, 'quic-cert.pem')).mode & 0o777, 0o600);
    assert.match(fingerprintOf(agent), /^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('pushes a tree over 4 QUIC streams, recording the agent on first use', async () => {
    const r = await client([src, url('/backup'), '--streams', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, path.join(root, 'backup'));
    assert.deepEqual(partFiles(root), []);
    const s = summary(r.stdout);
    assert.ok((s.bytesOnWire as number) > (s.bytes as number) * 0.9, 'the data crossed the QUIC connection');
    const known = fs.readFileSync(path.join(clientHome, '.smartcopy/known_agents'), 'utf8');
    assert.equal(known.trim(), `127.0.0.1:${agent.port} ${fingerprintOf(agent)}`);
    assert.match(r.stderr, /Permanently added 127\.0\.0\.1:\d+/);
  });

  it('pulls it back; the recorded fingerprint matches silently', async () => {
    const dst = path.join(work, 'pulled');
    const r = await client([url('/backup'), dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Permanently added/);
    assertSameTree(src, dst);
  });

  it('--incremental re-sync sends nothing; --delta sends only the change', async () => {
    const again = await client([src, url('/backup'), '--incremental', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(summary(again.stdout).filesCopied, 0);
    const changed = tempDir('quic-changed');
    try {
      fs.cpSync(src, changed, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      const fd = fs.openSync(path.join(changed, 'bin/tool'), 'r+');
      fs.writeSync(fd, Buffer.alloc(8192, 0x33), 0, 8192, 2 * 1024 * 1024);
      fs.closeSync(fd);
      const r = await client([changed, url('/backup'), '--delta', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const s = summary(r.stdout);
      assert.ok((s.bytesMatched as number) > 4 * 1024 * 1024, `matched ${s.bytesMatched}`);
      assertSameTree(changed, path.join(root, 'backup'));
    } finally {
      cleanup(changed);
    }
  });

  it('--quic-fingerprint pins the certificate: the right one passes, another is refused', async () => {
    const home = tempDir('quic-pin-home');
    try {
      const ok = await client([src, url('/pinned'), '--quic-fingerprint', fingerprintOf(agent)], home);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(fs.existsSync(path.join(home, '.smartcopy/known_agents')), false, 'a pinned run records nothing');
      const wrong = await client([src, url('/wrong'), '--quic-fingerprint', `SHA256:${'A'.repeat(43)}`], home);
      assert.equal(wrong.code, 5, wrong.stderr);
      assert.match(wrong.stderr, /not the pinned/);
      assert.equal(fs.existsSync(path.join(root, 'wrong')), false);
    } finally {
      cleanup(home);
    }
  });

  it('an agent whose certificate changed is refused like a changed SSH host key', async () => {
    // another agent on the same port with a new certificate (another HOME)
    const port = agent.port;
    const otherHome = tempDir('quic-other-home');
    await agent.stop();
    const impostor = await startAgent(root, ['--port', String(port)], { HOME: otherHome }, 'quic');
    try {
      const r = await client([src, url('/impostor', port)]);
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /IDENTITY OF THE AGENT AT 127\.0\.0\.1:\d+ HAS CHANGED/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.equal(fs.existsSync(path.join(root, 'impostor')), false);
    } finally {
      await impostor.stop();
      cleanup(otherHome);
      agent = await startAgent(root, ['--port', String(port)], { HOME: agentHome }, 'quic');
    }
  });

  it('16 KiB datagrams (--quic-payload on both ends) carry the same data', async () => {
    const big = await startAgent(root, ['--quic-payload', '16383'], { HOME: agentHome }, 'quic');
    try {
      const r = await client([src, url('/jumbo', big.port), '--quic-payload', '16383', '--quic-fingerprint', fingerprintOf(big)]);
      assert.equal(r.code, 0, r.stderr);
      assertSameTree(src, path.join(root, 'jumbo'));
    } finally {
      await big.stop();
    }
  });

  it('a token-protected QUIC agent refuses a client without the token', async () => {
    const tokenFile = path.join(work, 'token');
    fs.writeFileSync(tokenFile, 'quic-secret\n');
    const guarded = await startAgent(root, ['--token-file', tokenFile], { HOME: agentHome }, 'quic');
    try {
      const fp = fingerprintOf(guarded);
      const refused = await client([src, url('/guarded', guarded.port), '--quic-fingerprint', fp]);
      assert.equal(refused.code, 5, refused.stderr);
      assert.match(refused.stderr, /requires a token/);
      const ok = await client([src, url('/guarded', guarded.port), '--quic-fingerprint', fp, '--token-file', tokenFile]);
      assert.equal(ok.code, 0, ok.stderr);
      assertSameTree(src, path.join(root, 'guarded'));
    } finally {
      await guarded.stop();
    }
  });
});
