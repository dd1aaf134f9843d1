/**
 * SSH end to end: the built CLI against a real OpenSSH sshd on 127.0.0.1 (started per suite by
 * the transports' fixture), with `--use-agent` (the remote agent is this checkout's CLI, started
 * by sshd) and in SFTP mode. HOME points at a temp dir so nothing reads the user's ~/.ssh.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startSshd, type Sshd } from '../fixtures/sshd.js';
import { CLI, runCli, startCli, collect, summary } from '../fixtures/cli.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2023-03-04T05:06:07.000Z');
const REMOTE_CMD = `${process.execPath} ${CLI}`;

function buildSource(root: string): void {
  writeFile(root, 'docs/readme.txt', 'hello over ssh\n'.repeat(4000), { mode: 0o640, mtime: T0 });
  writeFile(root, 'docs/empty.txt', '', { mtime: T0 });
  writeFile(root, 'bin/tool', pseudoRandom(3 * 1024 * 1024 + 7, 21), { mode: 0o755, mtime: T0 });
  // above the chunk threshold: its chunks go over several channels, i.e. several agent processes
  writeFile(root, 'big/disk.img', pseudoRandom(70 * 1024 * 1024 + 9, 22), { mtime: T0 });
  writeFile(root, 'emoji 🎉/ünïcödé.txt', 'odd', { mtime: T0 });
  for (let i = 0; i < 40; i++) writeFile(root, `many/f${i}.txt`, `file ${i}\n`.repeat(i + 1), { mtime: T0 });
  fs.mkdirSync(path.join(root, 'empty-dir'));
  fs.symlinkSync('docs/readme.txt', path.join(root, 'link'));
}

describe('SSH: push and pull through a real sshd', () => {
  let sshd: Sshd;
  let home: string;
  let src: string;
  let remote: string;
  let work: string;
  let base: string[];
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, HOME: home, SSH_AUTH_SOCK: '' });
  const run = (args: string[]) => runCli([...args, ...base], { env: env() });
  const at = (p: string): string => `${sshd.alias}:${p}`;

  before(async () => {
    sshd = await startSshd();
    home = tempDir('ssh-home');
    src = tempDir('ssh-src');
    remote = tempDir('ssh-remote');
    work = tempDir('ssh-work');
    buildSource(src);
    base = ['--ssh', '--ssh-config', sshd.sshConfig];
  });
  after(async () => {
    await sshd.stop();
    cleanup(home, src, remote, work);
  });

  it('--use-agent pushes a tree over 4 channels (one agent process each)', async () => {
    const dst = path.join(remote, 'agent-push');
    const r = await run([src, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD, '--streams', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst);
    const s = summary(r.stdout);
    assert.ok((s.bytesOnWire as number) > (s.bytes as number) * 0.9, 'the data crossed the SSH channels');
    assert.deepEqual(partFiles(remote), []);
  });

  it('--use-agent --incremental re-sync sends nothing', async () => {
    const dst = path.join(remote, 'agent-push');
    const r = await run([src, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD, '--incremental', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summary(r.stdout).filesCopied, 0);
  });

  it('--use-agent pulls over one channel (ssh://user@host:port/path)', async () => {
    const dst = path.join(work, 'agent-pull');
    // no config file: the host key from ~/.ssh/known_hosts, the key from -i
    fs.mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 });
    fs.copyFileSync(sshd.knownHosts, path.join(home, '.ssh/known_hosts'));
    const url = `ssh://${sshd.user}@127.0.0.1:${sshd.port}${path.join(remote, 'agent-push')}`;
    const r = await runCli([url, dst, '--use-agent', '--remote-cmd', REMOTE_CMD, '--streams', '1', '-i', sshd.clientKey], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst);
  });

  it('--delta over SSH sends only the changed blocks', async () => {
    const dst = path.join(remote, 'delta');
    const first = await run([src, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD]);
    assert.equal(first.code, 0, first.stderr);
    const changed = tempDir('ssh-delta-src');
    try {
      fs.cpSync(src, changed, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
      const img = path.join(changed, 'bin/tool');
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 1024 * 1024);
      fs.closeSync(fd);
      const r = await run([changed, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD, '--delta', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const s = summary(r.stdout);
      assert.ok((s.bytesMatched as number) > 2 * 1024 * 1024, `most of bin/tool was matched: ${r.stdout.slice(-600)} ${r.stderr}`);
      assert.ok((s.bytesLiteral as number) < 200 * 1024, `few literal bytes (${s.bytesLiteral})`);
      assertSameTree(changed, dst);
    } finally {
      cleanup(changed);
    }
  });

  it('SFTP mode (no --use-agent) pushes, re-syncs nothing, deletes extras and pulls', async () => {
    const dst = path.join(remote, 'sftp');
    const r = await run([src, at(dst), '--streams', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst, { wholeSeconds: true });
    assert.deepEqual(partFiles(remote), []);

    const again = await run([src, at(dst), '--incremental', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(summary(again.stdout).filesCopied, 0, 'whole-second mtimes compare equal');

    writeFile(dst, 'extra/old.txt', 'remove me');
    const del = await run([src, at(dst), '--incremental', '--delete-extra', '--json']);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(fs.existsSync(path.join(dst, 'extra')), false);

    const back = path.join(work, 'sftp-pull');
    const p = await run([at(dst), back, '--verify', 'xxhash64']);
    assert.equal(p.code, 0, p.stderr);
    assertSameTree(src, back, { wholeSeconds: true });
  });

  it('SFTP mode refuses --delta with a clear message', async () => {
    const r = await run([src, at(path.join(remote, 'x')), '--delta']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--delta needs a smartcopy agent on the remote.*--use-agent/);
    assert.equal(fs.existsSync(path.join(remote, 'x')), false);
  });

  it('a remote without smartcopy: one line saying so and how to fix it', async () => {
    const r = await run([src, at(path.join(remote, 'nope')), '--use-agent', '--remote-cmd', '/nonexistent/smartcopy']);
    assert.equal(r.code, 10, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /not installed on the remote.*--remote-cmd.*drop --use-agent/);
  });

  it('SSH options without an SSH target are refused', async () => {
    const r = await runCli([src, path.join(work, 'local'), '--use-agent'], { env: env() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /only apply to SSH transfers/);
  });

  it('an unknown host key is refused; --accept-new-host-key records it', async () => {
    // no known_hosts anywhere: the config's alias, but an empty UserKnownHostsFile
    const cfg = path.join(home, 'empty-known.conf');
    const known = path.join(home, 'known_hosts.new');
    fs.writeFileSync(
      cfg,
      `Host tofu-host\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User ${sshd.user}\n  IdentityFile ${sshd.clientKey}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${known}\n  GlobalKnownHostsFile /dev/null\n`,
    );
    const dst = path.join(remote, 'tofu');
    const refused = await runCli([src, `tofu-host:${dst}`, '--ssh', '--ssh-config', cfg], { env: env() });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /host key/i);
    assert.equal(fs.existsSync(dst), false);
    const ok = await runCli([src, `tofu-host:${dst}`, '--ssh', '--ssh-config', cfg, '--accept-new-host-key'], { env: env() });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(fs.readFileSync(known, 'utf8').trim().length > 0, 'the key was recorded');
    const again = await runCli([src, `tofu-host:${dst}`, '--ssh', '--ssh-config', cfg, '--incremental'], { env: env() });
    assert.equal(again.code, 0, again.stderr);
  });

  it('a killed connection leaves no partial final file, and a rerun resumes', async () => {
    const dst = path.join(remote, 'killed');
    const child = startCli(
      [src, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD, '--bandwidth-limit', '20M', '--json', ...base],
      { env: env() },
    );
    const done = collect(child);
    // wait until the big file is on its way, then cut the SSH connection on the server side
    const part = await waitFor(() => partFiles(dst).find((p) => p.includes('disk.img')), 20_000);
    assert.ok(part, 'the big file was being written');
    assert.ok(await waitFor(() => (chunkLogBytes(dst) > 0 ? true : undefined), 20_000), 'a chunk was verified and logged');
    sshd.killSessions();
    const r = await done;
    assert.notEqual(r.code, 0, 'the run failed');
    assert.equal(fs.existsSync(path.join(dst, 'big/disk.img')), false, 'no partial file under the final name');
    const rerun = await run([src, at(dst), '--use-agent', '--remote-cmd', REMOTE_CMD, '--json']);
    assert.equal(rerun.code, 0, `${rerun.stderr}\n${rerun.stdout.split('\n').filter((l) => l.includes('"error"')).join('\n')}`);
    assert.ok((summary(rerun.stdout).bytesResumed as number) > 0, 'verified chunks were kept');
    assertSameTree(src, dst);
    assert.deepEqual(partFiles(dst), []);
  });
});

/** Total size of the chunk logs under `root`: above 0 once a chunk has been verified and kept. */
function chunkLogBytes(root: string): number {
  let n = 0;
  for (const p of partFiles(root)) if (p.endsWith('.chunks')) n += fs.statSync(path.join(root, p)).size;
  return n;
}

async function waitFor<T>(f: () => T | undefined, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}
