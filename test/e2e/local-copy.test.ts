import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { collect, events, runCli, startCli, summary } from '../fixtures/cli.js';
import { assertSameTree, cleanup, partFiles, pseudoRandom, snapshot, tempDir, writeFile } from '../fixtures/tree.js';

const T0 = new Date('2021-03-04T05:06:07.250Z');
const T1 = new Date('2020-01-02T03:04:05.000Z');
const NON_UTF8 = Buffer.from([0x66, 0xff, 0x2e, 0x62]); // "f\xff.b"

/** A source tree with every kind of entry the engine must carry over. */
function buildSource(root: string): void {
  writeFile(root, 'a/b/c/deep.txt', 'deep\n', { mode: 0o640, mtime: T0 });
  writeFile(root, 'zero.bin', Buffer.alloc(0), { mtime: T1 });
  writeFile(root, 'exec.sh', '#!/bin/sh\necho hi\n', { mode: 0o755, mtime: T0 });
  writeFile(root, 'emoji 🚀 dir/résumé – naïve.txt', 'utf8 name\n', { mtime: T0 });
  writeFile(root, 'medium.bin', pseudoRandom(3 * 1024 * 1024 + 17, 7), { mtime: T1 });
  fs.mkdirSync(path.join(root, 'empty/nested-empty'), { recursive: true });
  fs.symlinkSync('a/b/c/deep.txt', path.join(root, 'link-to-deep'));
  fs.symlinkSync('does-not-exist', path.join(root, 'dangling'));
  fs.writeFileSync(Buffer.concat([Buffer.from(`${root}/`), NON_UTF8]), 'latin1 name');
  fs.chmodSync(path.join(root, 'a/b'), 0o750);
  fs.utimesSync(path.join(root, 'a/b'), T1, T1);
  fs.utimesSync(path.join(root, 'empty'), T0, T0);
}

describe('local copy (smartcopy SRC DST)', () => {
  let src: string;
  let work: string;
  before(() => {
    src = tempDir('src');
    work = tempDir('work');
    buildSource(src);
  });
  after(() => cleanup(src, work));

  it('mirrors a tree: nested and empty dirs, 0-byte files, symlinks, odd names, modes, mtimes', async () => {
    const dst = path.join(work, 'mirror');
    const r = await runCli([src, dst, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, dst);
    const s = summary(r.stdout);
    assert.equal(s.filesFailed, 0);
    assert.equal(s.bytesOnWire, 0, 'local copies put nothing on a wire');
    assert.ok(fs.readdirSync(dst, { encoding: 'buffer' }).some((n) => n.equals(NON_UTF8)), 'non-UTF-8 name kept byte for byte');
    assert.deepEqual(partFiles(dst), []);
  });

  it('copies into an existing directory as a mirror of its contents (like rsync SRC/ DST/)', async () => {
    const dst = path.join(work, 'existing');
    fs.mkdirSync(dst);
    writeFile(dst, 'keep-me.txt', 'not in source');
    const r = await runCli([src, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(dst, 'a/b/c/deep.txt')));
    assert.ok(fs.existsSync(path.join(dst, 'keep-me.txt')), 'without --delete-extra nothing is removed');
  });

  it('puts a file inside an existing directory or a path ending in /, else at the new name', async () => {
    const dir = path.join(work, 'into');
    fs.mkdirSync(dir);
    const f = path.join(src, 'exec.sh');
    assert.equal((await runCli([f, dir])).code, 0);
    assert.equal(fs.readFileSync(path.join(dir, 'exec.sh'), 'utf8'), fs.readFileSync(f, 'utf8'));
    assert.equal((await runCli([f, path.join(work, 'new-dir') + '/'])).code, 0);
    assert.ok(fs.statSync(path.join(work, 'new-dir/exec.sh')).isFile());
    assert.equal((await runCli([f, path.join(work, 'renamed.sh')])).code, 0);
    assert.equal(fs.statSync(path.join(work, 'renamed.sh')).mode & 0o777, 0o755);
  });

  it('sends a 100 MiB file through the chunked path intact', async () => {
    const big = tempDir('big');
    const dst = tempDir('bigdst');
    try {
      const data = pseudoRandom(100 * 1024 * 1024 + 12345, 99);
      writeFile(big, 'huge.img', data, { mtime: T1 });
      // --no-kernel-copy: data passes through the engine, so a large file is split into chunks
      // written by several workers into one .part
      const r = await runCli([path.join(big, 'huge.img'), path.join(dst, 'huge.img'), '--threads', '3', '--verify', 'xxhash64', '--no-kernel-copy', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const ev = events(r.stdout).find((e) => e.event === 'file' && e.path === 'huge.img');
      assert.equal(ev?.chunks, 4, 'travelled as 32 MiB chunks');
      assert.ok(fs.readFileSync(path.join(dst, 'huge.img')).equals(data));
      assert.equal(fs.statSync(path.join(dst, 'huge.img')).mtime.getTime(), T1.getTime());
      const again = await runCli([path.join(big, 'huge.img'), path.join(dst, 'huge.img'), '--threads', '2', '--json']);
      assert.equal(again.code, 0, again.stderr);
      assert.ok(fs.readFileSync(path.join(dst, 'huge.img')).equals(data), 'kernel copy over an existing file');
      assert.deepEqual(partFiles(dst), [], 'no .part or chunk record left behind');
    } finally {
      cleanup(big, dst);
    }
  });

  it('--incremental skips unchanged files and copies changed ones', async () => {
    const dst = path.join(work, 'incr');
    assert.equal((await runCli([src, dst])).code, 0);
    const first = summary((await runCli([src, dst, '--incremental', '--json'])).stdout);
    assert.equal(first.filesCopied, 0);
    assert.ok((first.filesSkipped as number) >= 7);
    writeFile(src, 'exec.sh', '#!/bin/sh\necho changed\n', { mode: 0o755 });
    const second = await runCli([src, dst, '--incremental', '--json']);
    const s2 = summary(second.stdout);
    assert.equal(s2.filesCopied, 1);
    const copied = events(second.stdout).filter((e) => e.event === 'file' && e.action === 'copied').map((e) => e.path);
    assert.deepEqual(copied, ['exec.sh']);
    assert.equal(fs.readFileSync(path.join(dst, 'exec.sh'), 'utf8'), '#!/bin/sh\necho changed\n');
  });

  it('--checksum compares content, not times', async () => {
    const dst = path.join(work, 'cksum');
    assert.equal((await runCli([src, dst])).code, 0);
    // Same size and mtime, different content: only --checksum notices.
    const p = path.join(dst, 'a/b/c/deep.txt');
    fs.writeFileSync(p, 'DEEP\n');
    fs.utimesSync(p, T0, T0);
    const incr = summary((await runCli([src, dst, '--incremental', '--json'])).stdout);
    assert.equal(incr.filesCopied, 0);
    const ck = summary((await runCli([src, dst, '--checksum', '--json'])).stdout);
    assert.equal(ck.filesCopied, 1);
    assert.equal(fs.readFileSync(p, 'utf8'), 'deep\n');
  });

  it('--delete-extra removes what the source does not have, and only that', async () => {
    const dst = path.join(work, 'del');
    assert.equal((await runCli([src, dst])).code, 0);
    writeFile(dst, 'extra.txt', 'x');
    writeFile(dst, 'extra-dir/sub/file.txt', 'y');
    const r = await runCli([src, dst, '--delete-extra', '--incremental', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(path.join(dst, 'extra.txt')));
    assert.ok(!fs.existsSync(path.join(dst, 'extra-dir')));
    assert.equal(summary(r.stdout).deleted, 2);
    assertSameTree(src, dst);
  });

  it('--dry-run changes nothing', async () => {
    const dst = path.join(work, 'dry');
    fs.mkdirSync(dst);
    writeFile(dst, 'extra.txt', 'x');
    const before = snapshot(dst, { includeRoot: true });
    const r = await runCli([src, dst, '--dry-run', '--delete-extra', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(snapshot(dst, { includeRoot: true }), before);
    const s = summary(r.stdout);
    assert.equal(s.dryRun, true);
    assert.ok((s.filesCopied as number) > 5, 'reports what it would copy');
    assert.equal(s.deleted, 1);
  });

  it('filters (--include/--exclude, first match wins) and size limits', async () => {
    const dst = path.join(work, 'filtered');
    const r = await runCli([src, dst, '--exclude', 'emoji*', '--include', 'deep.txt', '--exclude', '*.txt', '--max-size', '1M']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(dst, 'a/b/c/deep.txt')), 'included before the *.txt exclude');
    assert.ok(!fs.existsSync(path.join(dst, 'emoji 🚀 dir')), 'excluded directory not descended');
    assert.ok(!fs.existsSync(path.join(dst, 'medium.bin')), 'larger than --max-size');
    assert.ok(fs.existsSync(path.join(dst, 'exec.sh')));
    const dst2 = path.join(work, 'minsize');
    assert.equal((await runCli([src, dst2, '--min-size', '1K'])).code, 0);
    assert.ok(fs.existsSync(path.join(dst2, 'medium.bin')));
    assert.ok(!fs.existsSync(path.join(dst2, 'exec.sh')));
    assert.ok(!fs.existsSync(path.join(dst2, 'zero.bin')));
  });

  it('--files-from: a list of paths, and a JSON array of {src, dst}', async () => {
    const list = path.join(work, 'list.txt');
    fs.writeFileSync(list, '# comment\nexec.sh\na/b\n\n');
    const dst = path.join(work, 'ff1');
    const r = await runCli([src, dst, '--files-from', list]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(dst, 'exec.sh')));
    assert.ok(fs.existsSync(path.join(dst, 'a/b/c/deep.txt')), 'a listed directory brings its subtree');
    assert.ok(!fs.existsSync(path.join(dst, 'medium.bin')));
    const json = path.join(work, 'map.json');
    fs.writeFileSync(json, JSON.stringify([{ src: 'exec.sh', dst: 'bin/run.sh' }, { src: 'medium.bin', dst: 'data/m.bin' }]));
    const dst2 = path.join(work, 'ff2');
    const r2 = await runCli([src, dst2, '--files-from', json]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(fs.readFileSync(path.join(dst2, 'bin/run.sh'), 'utf8'), fs.readFileSync(path.join(src, 'exec.sh'), 'utf8'));
    assert.ok(fs.readFileSync(path.join(dst2, 'data/m.bin')).equals(fs.readFileSync(path.join(src, 'medium.bin'))));
    assert.deepEqual(fs.readdirSync(dst2).sort(), ['bin', 'data']);
  });

  it('a missing source gives one line and the file-selection exit code', async () => {
    const r = await runCli([path.join(work, 'nope'), path.join(work, 'x')]);
    assert.equal(r.code, 3);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /does not exist/);
    assert.ok(!fs.existsSync(path.join(work, 'x')));
  });

  it('usage errors exit 1', async () => {
    assert.equal((await runCli([src])).code, 1);
    assert.equal((await runCli([src, path.join(work, 'u'), '--threads', '0'])).code, 1);
    assert.equal((await runCli([src, path.join(work, 'u'), '--no-such-flag'])).code, 1);
  });

  it('an unreadable file: the rest is copied, exit code says partial transfer', async () => {
    const s = tempDir('unreadable');
    const d = tempDir('unreadable-dst');
    try {
      writeFile(s, 'ok1.txt', 'one');
      writeFile(s, 'secret.txt', 'no');
      writeFile(s, 'sub/ok2.txt', 'two');
      fs.chmodSync(path.join(s, 'secret.txt'), 0o000);
      // root reads anything: drop to an unprivileged user so the permission really bites
      const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
      if (process.getuid?.() === 0) {
        for (const p of [s, d, path.join(s, 'sub'), path.join(s, 'ok1.txt'), path.join(s, 'sub/ok2.txt')]) fs.chownSync(p, 65534, 65534);
        fs.chmodSync(s, 0o755);
        fs.chmodSync(d, 0o755);
      }
      const r = await runCli([s, path.join(d, 'out'), '--json'], asUser);
      assert.equal(r.code, 23, r.stderr + r.stdout);
      assert.equal(fs.readFileSync(path.join(d, 'out/ok1.txt'), 'utf8'), 'one');
      assert.equal(fs.readFileSync(path.join(d, 'out/sub/ok2.txt'), 'utf8'), 'two');
      assert.ok(!fs.existsSync(path.join(d, 'out/secret.txt')));
      assert.equal(summary(r.stdout).filesFailed, 1);
      assert.deepEqual(partFiles(d), []);
    } finally {
      cleanup(s, d);
    }
  });

  it('SIGINT mid-copy stops quickly, exit 20, no partial file under a final name', async () => {
    const s = tempDir('sigint');
    const d = tempDir('sigint-dst');
    try {
      writeFile(s, 'big1.bin', pseudoRandom(40 * 1024 * 1024, 3));
      writeFile(s, 'big2.bin', pseudoRandom(40 * 1024 * 1024, 4));
      // A bandwidth limit keeps the copy running long enough to interrupt it mid-file.
      const child = startCli([s, path.join(d, 'out'), '--bandwidth-limit', '8M', '--json', '--threads', '1']);
      const result = collect(child);
      await new Promise<void>((resolve) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('"event":"progress"')) resolve();
        });
      });
      const t0 = Date.now();
      child.kill('SIGINT');
      const r = await result;
      assert.equal(r.code, 20, r.stderr);
      assert.ok(Date.now() - t0 < 5000, 'stopped promptly');
      for (const name of ['big1.bin', 'big2.bin']) {
        const p = path.join(d, 'out', name);
        if (fs.existsSync(p)) assert.ok(fs.readFileSync(p).equals(fs.readFileSync(path.join(s, name))), `${name} is complete if present`);
      }
      assert.deepEqual(partFiles(d), [], 'whole-file .part files are removed on interrupt');
    } finally {
      cleanup(s, d);
    }
  });
});
