import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PathEscapeError, SmartcopyError } from '@smartcopy/protocol';
import { Applier, NATIVE_BATCH_MAX, SMALL_FILE_MAX, type NativeBatchItem } from '../src/apply/applier.js';
import { CopyPool } from '../src/apply/copy-pool.js';
import { chunkLogPath, isPartName, partPath } from '../src/apply/part-name.js';
import type { FileMeta } from '../src/apply/types.js';
import { PathJail } from '../src/jail/jail.js';

let tmp: string;
let root: string;
let srcDir: string;
let outside: string;
let jail: PathJail;
let ap: Applier;
let seq = 0;

before(async () => {
  tmp = await fs.promises.realpath(await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sc-apply-')));
  root = path.join(tmp, 'root');
  srcDir = path.join(tmp, 'src');
  outside = path.join(tmp, 'outside');
  for (const d of [root, srcDir, outside]) await fs.promises.mkdir(d);
  jail = await PathJail.open(root);
  ap = new Applier(jail, { fsync: false, preserveOwner: false });
});
after(async () => {
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const b = (s: string): Buffer => Buffer.from(s);
const tid = (): string => `t${++seq}`;
const sha = (d: Uint8Array): Buffer => createHash('sha256').update(d).digest();
const code = (c: string) => (e: unknown): boolean => e instanceof SmartcopyError && e.code === c;
const MTIME_SEC = 1_700_000_123;

function meta(size: number, mode = 0o640, nsec = 123_456_789): FileMeta {
  return { size, mtimeSec: MTIME_SEC, mtimeNsec: nsec, mode: 0o100000 | mode, uid: 0, gid: 0 };
}

function assertMtime(p: string, m: FileMeta, lstat = false): void {
  const st = lstat ? fs.lstatSync(p, { bigint: true }) : fs.statSync(p, { bigint: true });
  const want = BigInt(m.mtimeSec) * 1_000_000_000n + BigInt(m.mtimeNsec);
  const diff = st.mtimeNs > want ? st.mtimeNs - want : want - st.mtimeNs;
  // futimes takes a double: sub-microsecond precision at today's dates
  assert.ok(diff < 1000n, `mtime off by ${diff} ns`);
}

/** every leftover temp name under a directory */
function partsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, encoding: 'buffer' })) {
    const full = Buffer.concat([Buffer.from(dir + '/'), e.name]).toString('latin1');
    if (isPartName(e.name)) out.push(full);
    if (e.isDirectory()) out.push(...partsUnder(Buffer.from(full, 'latin1').toString()));
  }
  return out;
}

function source(name: string, data: Buffer): Buffer {
  const p = path.join(srcDir, name);
  fs.writeFileSync(p, data);
  return Buffer.from(p);
}

describe('part names', () => {
  it('are .<base>.<id>.sc-part in the same directory', () => {
    assert.equal(partPath(b('/r/d/file.txt'), 'abc-1').toString(), '/r/d/.file.txt.abc-1.sc-part');
    assert.equal(partPath(b('/x'), 'z').toString(), '/.x.z.sc-part');
  });

  it('stay within NAME_MAX with room for the chunk log, and stay distinct', () => {
    const long1 = b(`/r/${'a'.repeat(255)}`);
    const long2 = b(`/r/${'a'.repeat(254)}b`);
    const id = 'x'.repeat(64);
    const p1 = partPath(long1, id);
    const p2 = partPath(long2, id);
    const name = (p: Buffer): Buffer => p.subarray(p.lastIndexOf(0x2f) + 1);
    assert.ok(name(chunkLogPath(p1)).length <= 255);
    assert.notDeepEqual(p1, p2);
    assert.ok(isPartName(name(p1)));
  });

  it('isPartName recognises parts and chunk logs only', () => {
    assert.ok(isPartName(b('.f.t1.sc-part')));
    assert.ok(isPartName(b('.f.t1.sc-part.chunks')));
    assert.equal(isPartName(b('f.t1.sc-part')), false);
    assert.equal(isPartName(b('.profile')), false);
    assert.equal(isPartName(b('.x.sc-part.bak')), false);
  });

  it('refuses transfer ids that could change the path', () => {
    for (const bad of ['', 'a/b', '..', 'a b', 'x'.repeat(65)]) {
      assert.throws(() => partPath(b('/r/f'), bad), code('SC_ERR_PROTOCOL'));
    }
  });
});

describe('PartFile', () => {
  for (const [label, size] of [['small (buffered)', 5000], ['large (on disk)', SMALL_FILE_MAX + 300_000]] as const) {
    it(`${label}: nothing under the final name until commit; then content, mode and mtime`, async () => {
      const data = randomBytes(size);
      const m = meta(size, 0o640);
      const pf = await ap.createFile(b(`pf/${size}.bin`), m, tid());
      // out of order, in three pieces
      const cut1 = Math.floor(size / 3);
      const cut2 = Math.floor((2 * size) / 3);
      await Promise.all([pf.write(data.subarray(cut2), cut2), pf.write(data.subarray(0, cut1), 0), pf.write(data.subarray(cut1, cut2), cut1)]);
      const final = `${root}/pf/${size}.bin`;
      assert.equal(fs.existsSync(final), false);
      await pf.commit();
      assert.deepEqual(fs.readFileSync(final), data);
      assert.equal(fs.statSync(final).mode & 0o7777, 0o640);
      assertMtime(final, m);
      assert.deepEqual(partsUnder(`${root}/pf`), []);
      await pf.discard(); // a no-op after commit
      assert.ok(fs.existsSync(final));
    });
  }

  it('a large part is a real file under its part name while it is written', async () => {
    const size = SMALL_FILE_MAX + 1;
    const pf = await ap.createFile(b('pf/visible-part'), meta(size), tid());
    await pf.write(Buffer.alloc(10, 1), 0);
    assert.ok(fs.existsSync(pf.partPath));
    assert.equal(fs.statSync(pf.partPath).mode & 0o777, 0o600);
    await pf.discard();
    assert.equal(fs.existsSync(pf.partPath), false);
    await pf.discard();
  });

  it('a small file that outgrows its buffer is moved to disk transparently', async () => {
    const size = 3000;
    const pf = await ap.createFile(b('pf/outgrow'), meta(size), tid());
    await pf.write(Buffer.alloc(size, 7), 0);
    await pf.write(Buffer.alloc(10, 8), size); // beyond the announced size
    assert.ok(fs.existsSync(pf.partPath));
    await assert.rejects(pf.commit(), code('SC_ERR_CHECKSUM_MISMATCH'));
    assert.equal(fs.existsSync(`${root}/pf/outgrow`), false);
    assert.deepEqual(partsUnder(`${root}/pf`), []);
  });

  for (const size of [100, SMALL_FILE_MAX + 10]) {
    it(`verify: a hash mismatch keeps nothing under the final name (${size} bytes)`, async () => {
      const data = randomBytes(size);
      const pf = await ap.createFile(b(`pf/bad-${size}`), meta(size), tid());
      await pf.write(data, 0);
      await assert.rejects(pf.commit({ verify: { algo: 'sha256', expected: sha(Buffer.from('something else')) } }), code('SC_ERR_CHECKSUM_MISMATCH'));
      assert.equal(fs.existsSync(`${root}/pf/bad-${size}`), false);
      assert.deepEqual(partsUnder(`${root}/pf`), []);
      await pf.discard();
    });

    it(`verify: a matching hash commits (${size} bytes)`, async () => {
      const data = randomBytes(size);
      const pf = await ap.createFile(b(`pf/good-${size}`), meta(size), tid());
      await pf.write(data, 0);
      await pf.commit({ verify: { algo: 'sha256', expected: sha(data) } });
      assert.deepEqual(fs.readFileSync(`${root}/pf/good-${size}`), data);
    });
  }

  it('a short file (fewer bytes than announced) is not committed', async () => {
    const pf = await ap.createFile(b('pf/short'), meta(100), tid());
    await pf.write(Buffer.alloc(60), 0);
    await assert.rejects(pf.commit(), code('SC_ERR_CHECKSUM_MISMATCH'));
    assert.equal(fs.existsSync(`${root}/pf/short`), false);
  });

  it('replaces an existing file atomically and a directory (type change)', async () => {
    fs.mkdirSync(`${root}/pf/was-dir/sub`, { recursive: true });
    fs.writeFileSync(`${root}/pf/was-dir/sub/x`, 'x');
    await jail.ensureParent(b('pf/was-dir/sub/x'), { create: false });
    const pf = await ap.createFile(b('pf/was-dir'), meta(3), tid());
    await pf.write(b('new'), 0);
    await pf.commit();
    assert.equal(fs.readFileSync(`${root}/pf/was-dir`, 'utf8'), 'new');
    assert.equal(jail.dirKnown('pf/was-dir'), false);

    const big = randomBytes(SMALL_FILE_MAX + 5);
    fs.mkdirSync(`${root}/pf/was-dir2`);
    const pf2 = await ap.createFile(b('pf/was-dir2'), meta(big.length), tid());
    await pf2.write(big, 0);
    await pf2.commit();
    assert.deepEqual(fs.readFileSync(`${root}/pf/was-dir2`), big);
  });

  it('replaces a final symlink instead of writing through it', async () => {
    const victim = path.join(outside, 'victim-pf');
    fs.writeFileSync(victim, 'precious');
    fs.symlinkSync(victim, `${root}/pf-link`);
    for (const size of [4, SMALL_FILE_MAX + 4]) {
      const pf = await ap.createFile(b('pf-link'), meta(size), tid());
      await pf.write(Buffer.alloc(size, 0x41), 0);
      await pf.commit();
      assert.equal(fs.lstatSync(`${root}/pf-link`).isFile(), true);
    }
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious');
  });

  it('never writes through a symlink planted at its part name', async () => {
    const victim = path.join(outside, 'victim-part');
    fs.writeFileSync(victim, 'precious');
    const id = tid();
    const size = SMALL_FILE_MAX + 100;
    fs.mkdirSync(`${root}/planted`, { recursive: true });
    fs.symlinkSync(victim, partPath(b(`${root}/planted/f`), id));
    const pf = await ap.createFile(b('planted/f'), meta(size), id);
    await pf.write(Buffer.alloc(size, 1), 0);
    await pf.commit();
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious');
    assert.equal(fs.statSync(`${root}/planted/f`).size, size);
  });

  it('refuses paths that escape the root', async () => {
    await assert.rejects(ap.createFile(b('../escape'), meta(1), tid()), (e: unknown) => e instanceof PathEscapeError);
    await assert.rejects(ap.createFile(b('/etc/x'), meta(1), tid()), (e: unknown) => e instanceof PathEscapeError);
    await assert.rejects(ap.createFile(b(''), meta(1), tid()), code('SC_ERR_DEST_INVALID'));
  });

  it('refuses a size that is not a non-negative integer', async () => {
    for (const size of [-1, 1.5, Number.NaN]) {
      await assert.rejects(ap.createFile(b('pf/badsize'), meta(size), tid()), code('SC_ERR_PROTOCOL'));
      await assert.rejects(ap.openShared(b('pf/badsize'), meta(size), tid()), code('SC_ERR_PROTOCOL'));
    }
  });

  it('write after commit or discard is an error', async () => {
    const pf = await ap.createFile(b('pf/closed'), meta(1), tid());
    await pf.write(b('x'), 0);
    await pf.commit();
    await assert.rejects(pf.write(b('y'), 0), code('SC_ERR_INTERNAL'));
    const pf2 = await ap.createFile(b('pf/closed2'), meta(1), tid());
    await pf2.discard();
    await assert.rejects(pf2.write(b('y'), 0), code('SC_ERR_INTERNAL'));
    await assert.rejects(pf2.commit(), code('SC_ERR_INTERNAL'));
  });
});

describe('native copies', () => {
  it('nativeCopy copies content and applies mode and mtime', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const src = source('n1', data);
    const m = meta(data.length, 0o604);
    await ap.nativeCopy(src, b('native/n1'), m, tid());
    assert.deepEqual(fs.readFileSync(`${root}/native/n1`), data);
    assert.equal(fs.statSync(`${root}/native/n1`).mode & 0o7777, 0o604);
    assertMtime(`${root}/native/n1`, m);
  });

  it('nativeCopy with verify: mismatch leaves nothing, match commits', async () => {
    const data = randomBytes(10_000);
    const src = source('n2', data);
    await assert.rejects(ap.nativeCopy(src, b('native/n2'), meta(data.length), tid(), { verify: { algo: 'sha256', expected: sha(b('nope')) } }), code('SC_ERR_CHECKSUM_MISMATCH'));
    assert.equal(fs.existsSync(`${root}/native/n2`), false);
    assert.deepEqual(partsUnder(`${root}/native`), []);
    await ap.nativeCopy(src, b('native/n2'), meta(data.length), tid(), { verify: { algo: 'sha256', expected: sha(data) } });
    assert.deepEqual(fs.readFileSync(`${root}/native/n2`), data);
  });

  it('nativeCopy of a vanished source is SC_ERR_VANISHED', async () => {
    await assert.rejects(ap.nativeCopy(b(path.join(srcDir, 'gone')), b('native/gone'), meta(1), tid()), code('SC_ERR_VANISHED'));
    assert.equal(fs.existsSync(`${root}/native/gone`), false);
  });

  it('nativeCopyBatch: per-item errors never fail the others', async () => {
    const items: NativeBatchItem[] = [];
    const want = new Map<string, Buffer>();
    for (let d = 0; d < 3; d++) {
      for (let i = 0; i < 50; i++) {
        const data = randomBytes(100 + i * 37);
        const name = `b${d}-${i}`;
        items.push({ src: source(name, data), rel: b(`batch/d${d}/${name}`), meta: meta(data.length, 0o600 + i % 8), transferId: tid() });
        want.set(`batch/d${d}/${name}`, data);
      }
    }
    const big = randomBytes(NATIVE_BATCH_MAX + 12345);
    items.push({ src: source('batch-big', big), rel: b('batch/d0/big'), meta: meta(big.length), transferId: tid() });
    want.set('batch/d0/big', big);
    const missingAt = items.length;
    items.push({ src: b(path.join(srcDir, 'does-not-exist')), rel: b('batch/d1/missing'), meta: meta(5), transferId: tid() });
    const escapeAt = items.length;
    items.push({ src: items[0]!.src, rel: b('../escape'), meta: meta(1), transferId: tid() });
    const badParentAt = items.length;
    fs.writeFileSync(`${root}/batch-file`, 'x');
    items.push({ src: items[0]!.src, rel: b('batch-file/child'), meta: meta(1), transferId: tid() });

    const results = await ap.nativeCopyBatch(items);
    assert.equal(results.length, items.length);
    assert.ok(results[missingAt] instanceof SmartcopyError && results[missingAt].code === 'SC_ERR_VANISHED');
    assert.ok(results[escapeAt] instanceof PathEscapeError);
    assert.ok(results[badParentAt] instanceof SmartcopyError && results[badParentAt].code === 'SC_ERR_DEST_INVALID');
    results.forEach((r, i) => {
      if (i !== missingAt && i !== escapeAt && i !== badParentAt) assert.equal(r, null, `item ${i}: ${r?.message}`);
    });
    for (const [rel, data] of want) assert.deepEqual(fs.readFileSync(`${root}/${rel}`), data, rel);
    assert.equal(fs.statSync(`${root}/batch/d2/b2-3`).mode & 0o7777, 0o603);
    assertMtime(`${root}/batch/d1/b1-7`, items[57]!.meta);
    assert.equal(fs.existsSync(`${root}/batch/d1/missing`), false);
    assert.deepEqual(partsUnder(`${root}/batch`), []);
  });

  it('nativeCopyBatch replaces a directory at the final name (type change)', async () => {
    fs.mkdirSync(`${root}/batch2/was-dir/inner`, { recursive: true });
    await jail.ensureParent(b('batch2/was-dir/inner/x'), { create: false });
    const src = source('tc', b('file now'));
    const [r] = await ap.nativeCopyBatch([{ src, rel: b('batch2/was-dir'), meta: meta(8), transferId: tid() }]);
    assert.equal(r, null);
    assert.equal(fs.readFileSync(`${root}/batch2/was-dir`, 'utf8'), 'file now');
    assert.equal(jail.dirKnown('batch2/was-dir'), false);
  });

  it('nativeCopyBatch with fsync on still copies', async () => {
    const synced = new Applier(jail, { fsync: true, preserveOwner: false });
    const data = randomBytes(999);
    const [r] = await synced.nativeCopyBatch([{ src: source('fs1', data), rel: b('fsync/one'), meta: meta(999), transferId: tid() }]);
    assert.equal(r, null);
    assert.deepEqual(fs.readFileSync(`${root}/fsync/one`), data);
    const pf = await synced.createFile(b('fsync/two'), meta(3), tid());
    await pf.write(b('abc'), 0);
    await pf.commit();
    assert.equal(fs.readFileSync(`${root}/fsync/two`, 'utf8'), 'abc');
  });
});

describe('shared parts (chunked large files)', () => {
  const CHUNK = 256 * 1024;

  it('several writers fill chunks out of order; commit checks the log and renames', async () => {
    const size = 10 * CHUNK + 1234;
    const data = randomBytes(size);
    const src = source('shared-src', data);
    const id = tid();
    const m = meta(size, 0o644);
    const rel = b('shared/big.bin');
    const chunks: Array<[number, number]> = [];
    for (let off = 0; off < size; off += CHUNK) chunks.push([off, Math.min(CHUNK, size - off)]);
    const order = [7, 2, 9, 0, 5, 10, 1, 8, 3, 6, 4];
    // three writers, each its own handle
    const writers = await Promise.all([0, 1, 2].map(() => ap.openShared(rel, m, id)));
    assert.equal(fs.statSync(writers[0]!.partPath).size, size);
    await Promise.all(
      writers.map(async (w, k) => {
        for (let j = k; j < order.length; j += 3) {
          const [off, len] = chunks[order[j]!]!;
          if (k === 2) await w.copyRangeFrom(src, off, len);
          else await w.write(data.subarray(off, off + len), off);
          await w.recordChunk(off, len, sha(data.subarray(off, off + len)));
        }
      }),
    );
    assert.equal(fs.existsSync(`${root}/shared/big.bin`), false);
    const log = await ap.readChunkLog(rel, id);
    assert.equal(log.length, chunks.length);
    assert.deepEqual(log.find((r) => r.offset === chunks[3]![0])!.hash, sha(data.subarray(chunks[3]![0], chunks[3]![0] + CHUNK)));
    for (const w of writers) await w.release();
    await ap.commitShared(rel, m, id, { chunkCount: chunks.length, verify: { algo: 'sha256', expected: sha(data) } });
    assert.deepEqual(fs.readFileSync(`${root}/shared/big.bin`), data);
    assertMtime(`${root}/shared/big.bin`, m);
    assert.deepEqual(partsUnder(`${root}/shared`), []);
    assert.deepEqual(await ap.readChunkLog(rel, id), []);
  });

  it('commit with a missing chunk fails and keeps the part and its log; the rest resumes it', async () => {
    const size = 3 * CHUNK;
    const data = randomBytes(size);
    const id = tid();
    const m = meta(size);
    const rel = b('shared/resume.bin');
    const w = await ap.openShared(rel, m, id);
    for (const off of [0, 2 * CHUNK]) {
      await w.write(data.subarray(off, off + CHUNK), off);
      await w.recordChunk(off, CHUNK, sha(data.subarray(off, off + CHUNK)));
    }
    await w.release();
    await assert.rejects(ap.commitShared(rel, m, id, { chunkCount: 3 }), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_CHECKSUM_MISMATCH');
      assert.match(e.message, /never recorded/);
      assert.ok(e.retryable);
      return true;
    });
    assert.equal(fs.existsSync(`${root}/shared/resume.bin`), false);
    const part = partPath(b(`${root}/shared/resume.bin`), id);
    assert.ok(fs.existsSync(part));
    assert.ok(fs.existsSync(chunkLogPath(part)));

    // a later opener (a resume) finds the data: the part is not truncated
    const w2 = await ap.openShared(rel, m, id);
    assert.deepEqual(fs.readFileSync(part).subarray(0, CHUNK), data.subarray(0, CHUNK));
    assert.deepEqual((await ap.readChunkLog(rel, id)).map((r) => r.offset), [0, 2 * CHUNK]);
    await w2.write(data.subarray(CHUNK, 2 * CHUNK), CHUNK);
    await w2.recordChunk(CHUNK, CHUNK, new Uint8Array(0));
    await w2.release();
    await assert.rejects(ap.commitShared(rel, m, id, { chunkCount: 4 }), /4|3/);
    await ap.commitShared(rel, m, id, { chunkCount: 3, verify: { algo: 'sha256', expected: sha(data) } });
    assert.deepEqual(fs.readFileSync(`${root}/shared/resume.bin`), data);
    assert.equal(fs.existsSync(part), false);
    assert.equal(fs.existsSync(chunkLogPath(part)), false);
  });

  it('a whole-file hash mismatch at commit removes the part and its log', async () => {
    const size = CHUNK;
    const id = tid();
    const m = meta(size);
    const rel = b('shared/mismatch.bin');
    const w = await ap.openShared(rel, m, id);
    await w.write(Buffer.alloc(size, 3), 0);
    await w.recordChunk(0, size, new Uint8Array(0));
    await w.release();
    await assert.rejects(ap.commitShared(rel, m, id, { chunkCount: 1, verify: { algo: 'sha256', expected: sha(b('x')) } }), code('SC_ERR_CHECKSUM_MISMATCH'));
    const part = partPath(b(`${root}/shared/mismatch.bin`), id);
    assert.equal(fs.existsSync(part), false);
    assert.equal(fs.existsSync(chunkLogPath(part)), false);
    assert.equal(fs.existsSync(`${root}/shared/mismatch.bin`), false);
  });

  it('refuses writes outside the file and use after release', async () => {
    const id = tid();
    const w = await ap.openShared(b('shared/bounds'), meta(100), id);
    await assert.rejects(w.write(Buffer.alloc(10), 95), code('SC_ERR_PROTOCOL'));
    await assert.rejects(w.recordChunk(-1, 10, new Uint8Array(0)), code('SC_ERR_PROTOCOL'));
    await w.release();
    await w.release();
    await assert.rejects(w.write(Buffer.alloc(1), 0), code('SC_ERR_INTERNAL'));
  });

  it('one transfer id cannot name two files', async () => {
    const id = tid();
    const w = await ap.openShared(b('shared/one'), meta(10), id);
    await assert.rejects(ap.openShared(b('shared/two'), meta(10), id), code('SC_ERR_PROTOCOL'));
    await w.release();
  });

  it('a commit while a handle is still open stops its writes; the last release closes the file', async () => {
    // /dev/fd lists this process's open descriptors (Linux and macOS)
    const fds = (): number => fs.readdirSync('/dev/fd').length;
    const before = fds();
    const id = tid();
    const m = meta(10);
    const w = await ap.openShared(b('shared/open-at-commit'), m, id);
    await w.write(Buffer.alloc(10, 5), 0);
    await w.recordChunk(0, 10, new Uint8Array(0));
    await ap.commitShared(b('shared/open-at-commit'), m, id, { chunkCount: 1 });
    await assert.rejects(w.write(Buffer.alloc(1), 0), code('SC_ERR_INTERNAL'));
    await w.release();
    assert.equal(fds(), before);
    assert.deepEqual(fs.readFileSync(`${root}/shared/open-at-commit`), Buffer.alloc(10, 5));
  });

  it('copyRangeFrom a vanished source is SC_ERR_VANISHED', async () => {
    const w = await ap.openShared(b('shared/vanish'), meta(10), tid());
    await assert.rejects(w.copyRangeFrom(b(path.join(srcDir, 'nope')), 0, 10), code('SC_ERR_VANISHED'));
    await w.release();
  });
});

describe('directories, symlinks, deletes', () => {
  it('mkdir creates, keeps an existing directory, and replaces a file (type change)', async () => {
    const m = meta(0, 0o750);
    await ap.mkdir(b('dirs/a/b'), m);
    assert.ok(fs.statSync(`${root}/dirs/a/b`).isDirectory());
    fs.writeFileSync(`${root}/dirs/a/b/keep`, 'k');
    await ap.mkdir(b('dirs/a/b'), m);
    assert.ok(fs.existsSync(`${root}/dirs/a/b/keep`));
    fs.writeFileSync(`${root}/dirs/was-file`, 'f');
    await ap.mkdir(b('dirs/was-file'), m);
    assert.ok(fs.statSync(`${root}/dirs/was-file`).isDirectory());
    fs.symlinkSync(outside, `${root}/dirs/was-link`);
    await ap.mkdir(b('dirs/was-link'), m);
    assert.ok(fs.lstatSync(`${root}/dirs/was-link`).isDirectory());
    assert.deepEqual(fs.readdirSync(outside).filter((n) => n.startsWith('was')), []);
  });

  it('setDirMeta applies mode and mtime, and refuses a symlink', async () => {
    await ap.mkdir(b('dirs/meta'), meta(0, 0o755));
    fs.writeFileSync(`${root}/dirs/meta/inside`, 'x');
    const m = { ...meta(0, 0o710), mode: 0o040710 };
    await ap.setDirMeta(b('dirs/meta'), m);
    assert.equal(fs.statSync(`${root}/dirs/meta`).mode & 0o7777, 0o710);
    assertMtime(`${root}/dirs/meta`, m);
    const before = fs.statSync(outside).mode;
    fs.symlinkSync(outside, `${root}/dirs/meta-link`);
    await assert.rejects(ap.setDirMeta(b('dirs/meta-link'), { ...m, mode: 0o777 }), (e: unknown) => e instanceof PathEscapeError);
    assert.equal(fs.statSync(outside).mode, before);
    fs.writeFileSync(`${root}/dirs/not-a-dir`, 'x');
    await assert.rejects(ap.setDirMeta(b('dirs/not-a-dir'), m), code('SC_ERR_DEST_INVALID'));
  });

  it('symlink creates, replaces a file or directory, and keeps the target bytes', async () => {
    const m = meta(0);
    const target = new Uint8Array([0x2e, 0x2e, 0x2f, 0x66, 0xff]); // "../f\xff", never followed
    await ap.symlink(b('links/l1'), target, m);
    assert.deepEqual([...fs.readlinkSync(`${root}/links/l1`, { encoding: 'buffer' })], [...target]);
    assertMtime(`${root}/links/l1`, m, true);
    fs.writeFileSync(`${root}/links/was-file`, 'x');
    await ap.symlink(b('links/was-file'), b('elsewhere'), m);
    assert.equal(fs.readlinkSync(`${root}/links/was-file`), 'elsewhere');
    fs.mkdirSync(`${root}/links/was-dir/sub`, { recursive: true });
    await ap.symlink(b('links/was-dir'), b('x'), m);
    assert.ok(fs.lstatSync(`${root}/links/was-dir`).isSymbolicLink());
    assert.deepEqual(partsUnder(`${root}/links`), []);
  });

  it('remove deletes files, links (not their targets) and trees; missing is fine; the root is refused', async () => {
    fs.mkdirSync(`${root}/rm/tree/deep`, { recursive: true });
    fs.writeFileSync(`${root}/rm/tree/deep/f`, 'x');
    fs.writeFileSync(`${root}/rm/file`, 'x');
    const victim = path.join(outside, 'rm-victim');
    fs.mkdirSync(victim);
    fs.writeFileSync(path.join(victim, 'keep'), 'k');
    fs.symlinkSync(victim, `${root}/rm/link`);
    await jail.ensureParent(b('rm/tree/deep/f'), { create: false });
    await ap.remove(b('rm/file'));
    await ap.remove(b('rm/link'));
    await ap.remove(b('rm/tree'));
    assert.deepEqual(fs.readdirSync(`${root}/rm`), []);
    assert.ok(fs.existsSync(path.join(victim, 'keep')));
    assert.equal(jail.dirKnown('rm/tree'), false);
    await ap.remove(b('rm/never-existed'));
    await ap.remove(b('no-such-dir/x'));
    await assert.rejects(ap.remove(b('')), (e: unknown) => e instanceof PathEscapeError);
    await assert.rejects(ap.remove(b('../x')), (e: unknown) => e instanceof PathEscapeError);
    fs.symlinkSync(victim, `${root}/rm/dirlink`);
    await assert.rejects(ap.remove(b('rm/dirlink/keep')), (e: unknown) => e instanceof PathEscapeError);
    assert.ok(fs.existsSync(path.join(victim, 'keep')));
  });
});

describe('names that are not UTF-8', () => {
  const odd = Buffer.from([0x66, 0xff, 0x2e, 0x62]);
  const oddDir = Buffer.from([0xc3, 0x28, 0x64]);

  it('survive createFile, nativeCopyBatch, mkdir and symlink byte for byte', async () => {
    await ap.mkdir(oddDir, meta(0, 0o755));
    const rel = Buffer.concat([oddDir, b('/'), odd]);
    const pf = await ap.createFile(rel, meta(5), tid());
    await pf.write(b('hello'), 0);
    await pf.commit();
    const rel2 = Buffer.concat([oddDir, b('/n-'), odd]);
    const [r] = await ap.nativeCopyBatch([{ src: source('odd-src', b('native')), rel: rel2, meta: meta(6), transferId: tid() }]);
    assert.equal(r, null);
    const rel3 = Buffer.concat([oddDir, b('/l-'), odd]);
    await ap.symlink(rel3, odd, meta(0));
    const absDir = Buffer.concat([b(`${root}/`), oddDir]);
    const names = fs.readdirSync(absDir, { encoding: 'buffer' }).map((n) => n.toString('hex')).sort();
    assert.deepEqual(names, [odd, Buffer.concat([b('n-'), odd]), Buffer.concat([b('l-'), odd])].map((n) => n.toString('hex')).sort());
    assert.equal(fs.readFileSync(Buffer.concat([absDir, b('/'), odd]), 'utf8'), 'hello');
    await ap.remove(rel);
    assert.equal(fs.existsSync(Buffer.concat([absDir, b('/'), odd])), false);
  });
});

describe('discardAll', () => {
  it('removes uncommitted parts except shared parts with recorded chunks, then refuses new work', async () => {
    const own = new Applier(jail, { fsync: false, preserveOwner: false });
    const big = await own.createFile(b('abort/big'), meta(SMALL_FILE_MAX + 10), tid());
    await big.write(Buffer.alloc(100), 0);
    const small = await own.createFile(b('abort/small'), meta(10), tid());
    await small.write(Buffer.alloc(10), 0);
    const keepId = tid();
    const keep = await own.openShared(b('abort/keep'), meta(CHUNK_SIZE), keepId);
    await keep.write(Buffer.alloc(1000, 9), 0);
    await keep.recordChunk(0, 1000, new Uint8Array(0));
    const dropId = tid();
    const drop = await own.openShared(b('abort/drop'), meta(CHUNK_SIZE), dropId);
    await drop.write(Buffer.alloc(10), 0);
    const done = await own.createFile(b('abort/done'), meta(2), tid());
    await done.write(b('ok'), 0);
    await done.commit();

    await own.discardAll();
    const left = fs.readdirSync(`${root}/abort`).sort();
    const keepPart = path.basename(partPath(b(`${root}/abort/keep`), keepId).toString());
    assert.deepEqual(left, ['done', keepPart, `${keepPart}.chunks`].sort());
    await assert.rejects(own.createFile(b('abort/late'), meta(1), tid()), code('SC_ERR_ABORTED'));
    await assert.rejects(big.write(Buffer.alloc(1), 0), code('SC_ERR_INTERNAL'));
    await keep.release();
    await drop.release();
  });
});

const CHUNK_SIZE = 64 * 1024;

describe('CopyPool', () => {
  it('an idle pool does not keep the process alive', () => {
    const applier = fileURLToPath(new URL('../src/apply/applier.js', import.meta.url));
    const jailMod = fileURLToPath(new URL('../src/jail/jail.js', import.meta.url));
    const script = `
      const { Applier } = await import(${JSON.stringify(applier)});
      const { PathJail } = await import(${JSON.stringify(jailMod)});
      const ap = new Applier(await PathJail.open(${JSON.stringify(root)}), { fsync: false, preserveOwner: false });
      const r = await ap.nativeCopyBatch([{ src: Buffer.from('/nonexistent'), rel: Buffer.from('child/x'), meta: { size: 1, mtimeSec: 0, mtimeNsec: 0, mode: 0o644, uid: 0, gid: 0 }, transferId: 'c1' }]);
      process.stdout.write(r[0].code);
    `;
    // hangs (and is killed by the timeout) if a worker stays referenced
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000, encoding: 'utf8' });
    assert.equal(out, 'SC_ERR_VANISHED');
  });

  it('after close, jobs fail instead of hanging', async () => {
    const pool = new CopyPool({ workers: 1 });
    await pool.close();
    const o = await pool.run({ part: '/nonexistent/p', final: '/nonexistent/f', mode: 0o644, uid: 0, gid: 0, atime: 0, mtime: 0, flags: 0 });
    assert.ok(o !== null && 'error' in o && o.error.code === 'EWORKER');
  });

  it('spreads a burst over its workers and keeps the order of outcomes', async () => {
    const pool = new CopyPool({ workers: 2, maxBatch: 4 });
    try {
      fs.mkdirSync(`${root}/poolburst`, { recursive: true });
      const jobs = Array.from({ length: 25 }, (_, i) => ({
        data: Buffer.from(`file ${i}`),
        part: `${root}/poolburst/.f${i}.p.sc-part`,
        final: i === 13 ? `${root}/poolburst/missing-dir/f${i}` : `${root}/poolburst/f${i}`,
        mode: 0o644, uid: 0, gid: 0, atime: 0, mtime: 1_000_000, flags: 0,
      }));
      const out = await pool.runMany(jobs);
      out.forEach((o, i) => {
        if (i === 13) assert.ok(o !== null && 'error' in o && o.error.code === 'ENOENT');
        else assert.equal(o, null);
      });
      assert.equal(fs.readFileSync(`${root}/poolburst/f24`, 'utf8'), 'file 24');
    } finally {
      await pool.close();
    }
  });
});

describe('ownership', () => {
  it('preserveOwner chowns files, directories and links (the suite runs as root)', async () => {
    assert.equal(process.getuid?.(), 0, 'chown to other owners needs root: run the suite as root (README "Testing")');
    const own = new Applier(jail, { fsync: false, preserveOwner: true });
    const m = { ...meta(3, 0o4755), uid: 1234, gid: 2345 };
    const pf = await own.createFile(b('owned/f'), m, tid());
    await pf.write(b('abc'), 0);
    await pf.commit();
    const st = fs.statSync(`${root}/owned/f`);
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 2345);
    // chmod after chown: the set-uid bit survives
    assert.equal(st.mode & 0o7777, 0o4755);
    const [r] = await own.nativeCopyBatch([{ src: source('own-src', b('x')), rel: b('owned/n'), meta: { ...m, size: 1 }, transferId: tid() }]);
    assert.equal(r, null);
    assert.equal(fs.statSync(`${root}/owned/n`).uid, 1234);
    await own.mkdir(b('owned/d'), { ...m, mode: 0o40755 });
    assert.equal(fs.statSync(`${root}/owned/d`).gid, 2345);
    await own.symlink(b('owned/l'), b('f'), m);
    assert.equal(fs.lstatSync(`${root}/owned/l`).uid, 1234);
  });
});
