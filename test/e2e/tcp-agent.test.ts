import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { runCli, summary } from '../fixtures/cli.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2022-05-06T07:08:09.000Z');
const NON_UTF8 = Buffer.from([0x6e, 0xe9, 0x2e, 0x74]);

function buildSource(root: string): void {
  writeFile(root, 'docs/readme.txt', 'hello agent\n'.repeat(5000), { mode: 0o640, mtime: T0 });
  writeFile(root, 'docs/empty.txt', '', { mtime: T0 });
  writeFile(root, 'bin/tool', pseudoRandom(2 * 1024 * 1024 + 3, 11), { mode: 0o755, mtime: T0 });
  writeFile(root, 'big/disk.img', pseudoRandom(70 * 1024 * 1024 + 5, 12), { mtime: T0 });
  writeFile(root, 'emoji 🎉/ünïcödé.txt', 'odd', { mtime: T0 });
  fs.mkdirSync(path.join(root, 'empty-dir'));
  fs.symlinkSync('docs/readme.txt', path.join(root, 'link'));
  fs.writeFileSync(Buffer.concat([Buffer.from(`${root}/`), NON_UTF8]), 'latin1');
}

describe('TCP agent: push and pull', () => {
  let src: string;
  let root: string;
  let work: string;
  let agent: RunningAgent;
  before(async () => {
    src = tempDir('tcp-src');
    root = tempDir('tcp-root');
    work = tempDir('tcp-work');
    buildSource(src);
    agent = await startAgent(root);
  });
  after(async () => {
    await agent.stop();
    cleanup(src, root, work);
  });

  it('pushes a tree into <root>/path (host:PORT:/path)', async () => {
    const r = await runCli([src, `127.0.0.1:${agent.port}:/backup`, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, path.join(root, 'backup'));
    const s = summary(r.stdout);
    assert.ok((s.bytesOnWire as number) > (s.bytes as number) * 0.9, 'the data crossed the wire');
    assert.deepEqual(partFiles(root), []);
  });

  it('pulls a tree back (tcp://host:PORT/path)', async () => {
    const dst = path.join(work, 'pulled');
    const r = await runCli([`tcp://127.0.0.1:${agent.port}/backup`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst);
  });

  it('--incremental push sends nothing for an unchanged tree', async () => {
    const r = await runCli([src, `127.0.0.1:${agent.port}:/backup`, '--incremental', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    assert.equal(s.filesCopied, 0);
    assert.ok((s.bytesOnWire as number) < 200_000, `only listings cross the wire (${s.bytesOnWire})`);
  });

  it('--incremental pull copies only what changed', async () => {
    const dst = path.join(work, 'pulled');
    fs.writeFileSync(path.join(dst, 'docs/readme.txt'), 'local edit');
    fs.utimesSync(path.join(dst, 'docs/readme.txt'), new Date(), new Date());
    const r = await runCli([`127.0.0.1:${agent.port}:/backup`, dst, '--incremental', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summary(r.stdout).filesCopied, 1);
    assertSameTree(src, dst);
  });

  it('--delete-extra on push and on pull', async () => {
    writeFile(path.join(root, 'backup'), 'stale/old.txt', 'old');
    const r = await runCli([src, `127.0.0.1:${agent.port}:/backup`, '--incremental', '--delete-extra']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(path.join(root, 'backup/stale')));
    const dst = path.join(work, 'pulled');
    writeFile(dst, 'junk.bin', 'x');
    const p = await runCli([`127.0.0.1:${agent.port}:/backup`, dst, '--incremental', '--delete-extra']);
    assert.equal(p.code, 0, p.stderr);
    assert.ok(!fs.existsSync(path.join(dst, 'junk.bin')));
  });

  for (const streams of ['1', '8']) {
    it(`--streams ${streams} with --compress moves fewer bytes than the data for text`, async () => {
      const text = tempDir('tcp-text');
      try {
        writeFile(text, 'log.txt', 'the quick brown fox jumps over the lazy dog\n'.repeat(200_000));
        writeFile(text, 'more/log2.txt', 'lorem ipsum dolor sit amet\n'.repeat(100_000));
        const r = await runCli([text, `127.0.0.1:${agent.port}:/z${streams}`, '--compress', '--streams', streams, '--json']);
        assert.equal(r.code, 0, r.stderr);
        const s = summary(r.stdout);
        assert.ok((s.bytesOnWire as number) < (s.bytes as number) / 2, `wire ${s.bytesOnWire} vs data ${s.bytes}`);
        assertSameTree(text, path.join(root, `z${streams}`));
        const back = path.join(work, `zback${streams}`);
        const p = await runCli([`127.0.0.1:${agent.port}:/z${streams}`, back, '--compress', '--streams', streams, '--json']);
        assert.equal(p.code, 0, p.stderr);
        assert.ok((summary(p.stdout).bytesOnWire as number) < (summary(p.stdout).bytes as number) / 2);
        assertSameTree(text, back);
      } finally {
        cleanup(text);
      }
    });
  }

  it('a single file: into an existing remote directory, or to a new name', async () => {
    const f = path.join(src, 'bin/tool');
    assert.equal((await runCli([f, `127.0.0.1:${agent.port}:/backup/docs`])).code, 0);
    assert.ok(fs.readFileSync(path.join(root, 'backup/docs/tool')).equals(fs.readFileSync(f)));
    assert.equal((await runCli([f, `127.0.0.1:${agent.port}:/single/renamed`])).code, 0);
    assert.ok(fs.readFileSync(path.join(root, 'single/renamed')).equals(fs.readFileSync(f)));
    const out = path.join(work, 'one');
    assert.equal((await runCli([`127.0.0.1:${agent.port}:/single/renamed`, out])).code, 0);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(f)));
  });

  it('--verify and --dry-run work remotely', async () => {
    const r = await runCli([src, `127.0.0.1:${agent.port}:/verified`, '--verify', 'sha256']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, path.join(root, 'verified'));
    const d = await runCli([src, `127.0.0.1:${agent.port}:/dry`, '--dry-run', '--json']);
    assert.equal(d.code, 0, d.stderr);
    assert.ok(!fs.existsSync(path.join(root, 'dry')));
    assert.ok((summary(d.stdout).filesCopied as number) > 3);
  });
});

describe('TCP agent: security and refusals', () => {
  let root: string;
  let outside: string;
  let work: string;
  let tokenFile: string;
  let agent: RunningAgent;
  before(async () => {
    root = tempDir('sec-root');
    outside = tempDir('sec-outside');
    work = tempDir('sec-work');
    tokenFile = path.join(work, 'token');
    fs.writeFileSync(tokenFile, 's3cret-token\n');
    writeFile(work, 'src/a.txt', 'a');
    fs.symlinkSync(outside, path.join(root, 'escape'));
    agent = await startAgent(root, ['--token-file', tokenFile]);
  });
  after(async () => {
    await agent.stop();
    cleanup(root, outside, work);
  });

  it('a token is required: none, wrong, right', async () => {
    const none = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/x`], { env: { ...process.env, SMARTCOPY_TOKEN: '' } });
    assert.equal(none.code, 5, none.stderr);
    assert.match(none.stderr, /requires a token/);
    assert.equal(none.stderr.trim().split('\n').length, 1, none.stderr);
    const bad = path.join(work, 'bad');
    fs.writeFileSync(bad, 'nope');
    const wrong = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/x`, '--token-file', bad]);
    assert.equal(wrong.code, 5, wrong.stderr);
    assert.match(wrong.stderr, /wrong token/);
    assert.match(agent.stderr(), /wrong token/);
    assert.ok(!fs.existsSync(path.join(root, 'x')));
    const ok = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/x`, '--token-file', tokenFile]);
    assert.equal(ok.code, 0, ok.stderr);
    const env = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/y`], { env: { ...process.env, SMARTCOPY_TOKEN: 's3cret-token' } });
    assert.equal(env.code, 0, env.stderr);
    assert.equal(fs.readFileSync(path.join(root, 'x/a.txt'), 'utf8'), 'a');
  });

  it('paths outside the root are refused and nothing is written outside', async () => {
    const dotdot = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/../etc`, '--token-file', tokenFile]);
    assert.notEqual(dotdot.code, 0);
    assert.match(dotdot.stderr, /not allowed|outside|refus/);
    const link = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/escape/sub`, '--token-file', tokenFile]);
    assert.notEqual(link.code, 0, link.stderr);
    assert.deepEqual(fs.readdirSync(outside), [], 'nothing written through the symlink');
    assert.match(link.stderr, /symbolic link/);
    fs.writeFileSync(path.join(outside, 'secret'), 'outside the root');
    try {
      const through = await runCli([`127.0.0.1:${agent.port}:/escape/secret`, path.join(work, 'leak1'), '--token-file', tokenFile]);
      assert.notEqual(through.code, 0, through.stderr);
      assert.ok(!fs.existsSync(path.join(work, 'leak1')));
      // The link itself may be copied (as a link, like rsync -a); what it points to never is.
      const link2 = await runCli([`127.0.0.1:${agent.port}:/escape`, path.join(work, 'leak2'), '--token-file', tokenFile]);
      assert.equal(link2.code, 0, link2.stderr);
      assert.ok(fs.lstatSync(path.join(work, 'leak2')).isSymbolicLink());
    } finally {
      fs.rmSync(path.join(outside, 'secret'));
    }
  });

  it('the agent keeps serving after refusals', async () => {
    const ok = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/after`, '--token-file', tokenFile]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

describe('TCP agent: modes', () => {
  let root: string;
  let work: string;
  before(() => {
    root = tempDir('mode-root');
    work = tempDir('mode-work');
    writeFile(work, 'src/a.txt', 'a');
    writeFile(root, 'data/b.txt', 'b');
  });
  after(() => cleanup(root, work));

  it('--read-only refuses pushes but serves pulls', async () => {
    const agent = await startAgent(root, ['--read-only']);
    try {
      const push = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/in`]);
      assert.equal(push.code, 5, push.stderr);
      assert.match(push.stderr, /read-only/);
      assert.ok(!fs.existsSync(path.join(root, 'in')));
      const pull = await runCli([`127.0.0.1:${agent.port}:/data`, path.join(work, 'got')]);
      assert.equal(pull.code, 0, pull.stderr);
      assert.equal(fs.readFileSync(path.join(work, 'got/b.txt'), 'utf8'), 'b');
    } finally {
      await agent.stop();
    }
  });

  it('refuses a non-loopback bind without a token unless --insecure', async () => {
    const r = await runCli(['agent', '--protocol', 'tcp', '--bind', '0.0.0.0', '--port', '0', '--root', root], { env: { ...process.env, SMARTCOPY_TOKEN: '' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /without a token/);
  });

  it('--max-sessions: a session over the cap is refused as busy, others are served', async () => {
    const agent = await startAgent(root, ['--max-sessions', '1']);
    const holder = net.connect(agent.port, '127.0.0.1');
    try {
      await new Promise<void>((r) => holder.once('connect', () => r()));
      // a raw client that completes the handshake and then sits on its session
      const { encodeFrame, MsgType, PROTOCOL_VERSION } = await import('@smartcopy/protocol');
      holder.write(Buffer.concat(encodeFrame(MsgType.HELLO, { version: PROTOCOL_VERSION, minVersion: 1, sessionId: 'holder', clientNonce: Buffer.alloc(32, 1), streamIndex: 0, streamCount: 1 })));
      await new Promise<void>((r) => holder.once('data', () => r()));
      const busy = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/busy`]);
      assert.equal(busy.code, 5, busy.stderr);
      assert.match(busy.stderr, /busy/);
      holder.destroy();
      await new Promise((r) => setTimeout(r, 200));
      const ok = await runCli([path.join(work, 'src'), `127.0.0.1:${agent.port}:/busy`]);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      holder.destroy();
      await agent.stop();
    }
  });

  it('connection refused: one line, exit 10', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const r = await runCli([path.join(work, 'src'), `127.0.0.1:${port}:/x`]);
    assert.equal(r.code, 10, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /cannot connect/);
  });

  it('--tcp-agent makes host:/path a TCP agent on the default port 9878', async () => {
    const probe = net.connect(9878, '127.0.0.1');
    const inUse = await new Promise<boolean>((r) => {
      probe.once('connect', () => r(true));
      probe.once('error', () => r(false));
    });
    probe.destroy();
    const r = await runCli([path.join(work, 'src'), '127.0.0.1:/x', '--tcp-agent']);
    if (inUse) assert.notEqual(r.stderr, '', 'something answered on 9878; the run must still say what happened');
    else {
      assert.equal(r.code, 10, r.stderr);
      assert.match(r.stderr, /cannot connect to 127\.0\.0\.1:9878/);
    }
    assert.ok(!fs.existsSync(path.join(process.cwd(), '127.0.0.1:')), 'not taken for a local path');
  });

  it('SIGTERM stops the agent cleanly', async () => {
    const agent = await startAgent(root);
    assert.equal(await agent.stop('SIGTERM'), 0);
  });
});

describe('TCP agent: one long-lived agent, many sessions', () => {
  it('a push to a path deleted since the last session recreates it', async () => {
    const root = tempDir('life-root');
    const src = tempDir('life-src');
    const agent = await startAgent(root);
    try {
      writeFile(src, 'deep/er/file.txt', 'x');
      for (let i = 0; i < 3; i++) {
        const r = await runCli([src, `127.0.0.1:${agent.port}:/again`]);
        assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
        assert.equal(fs.readFileSync(path.join(root, 'again/deep/er/file.txt'), 'utf8'), 'x');
        fs.rmSync(path.join(root, 'again'), { recursive: true });
      }
    } finally {
      await agent.stop();
      cleanup(root, src);
    }
  });
});
