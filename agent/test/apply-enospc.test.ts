import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SmartcopyError } from '@smartcopy/protocol';
import { Applier, SMALL_FILE_MAX } from '../src/apply/applier.js';
import { CopyPool } from '../src/apply/copy-pool.js';
import { isPartName } from '../src/apply/part-name.js';
import type { FileMeta } from '../src/apply/types.js';
import { PathJail } from '../src/jail/jail.js';

/*
 * Disk full, for real: a 256 KiB tmpfs mounted for this file. Needs root (or CAP_SYS_ADMIN), as
 * the whole suite does (README "Testing"); without it these cases fail with the reason rather
 * than pass without testing anything.
 */
let tmp: string;
let mnt: string;
let mounted = false;
let ap: Applier;
// one worker: the batch below runs in order, so which file finds the disk full is deterministic
const pool = new CopyPool({ workers: 1 });
let seq = 0;

before(async () => {
  tmp = await fs.promises.realpath(await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sc-enospc-')));
  mnt = path.join(tmp, 'mnt');
  await fs.promises.mkdir(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`cannot mount a tmpfs for the disk-full tests (${(e as Error).message.split('\n')[0]}); run the suite as root`);
  }
  mounted = true;
  ap = new Applier(await PathJail.open(mnt), { fsync: false, preserveOwner: false }, pool);
});
after(async () => {
  await pool.close();
  if (mounted) execFileSync('umount', [mnt], { stdio: 'pipe' });
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const b = (s: string): Buffer => Buffer.from(s);
const meta = (size: number): FileMeta => ({ size, mtimeSec: 1_700_000_000, mtimeNsec: 0, mode: 0o100644, uid: 0, gid: 0 });
const tid = (): string => `e${++seq}`;
const noSpace = (rel: string) => (e: unknown): boolean => {
  assert.ok(e instanceof SmartcopyError, String(e));
  assert.equal(e.code, 'SC_ERR_NO_SPACE');
  assert.match(e.message, /no space left on device/);
  assert.ok(e.message.includes(rel), e.message);
  return true;
};
const leftovers = (): string[] => fs.readdirSync(mnt).filter((n) => isPartName(b(n)));

describe('a full disk', () => {
  it('a large received file fails with SC_ERR_NO_SPACE and its part can be discarded', async () => {
    const size = 1 << 20;
    const pf = await ap.createFile(b('big.bin'), meta(size), tid());
    await assert.rejects(pf.write(randomBytes(size), 0), noSpace('big.bin'));
    await pf.discard();
    assert.deepEqual(fs.readdirSync(mnt), []);
  });

  it('a native copy fails with SC_ERR_NO_SPACE and leaves nothing behind', async () => {
    const src = path.join(tmp, 'src.bin');
    fs.writeFileSync(src, randomBytes(1 << 20));
    await assert.rejects(ap.nativeCopy(b(src), b('copy.bin'), meta(1 << 20), tid()), noSpace('copy.bin'));
    assert.deepEqual(fs.readdirSync(mnt), []);
  });

  it('in a batch only the file that does not fit fails', async () => {
    const a = path.join(tmp, 'a.bin');
    const c = path.join(tmp, 'c.bin');
    fs.writeFileSync(a, randomBytes(100 * 1024));
    fs.writeFileSync(c, randomBytes(200 * 1024));
    const [ra, rc] = await ap.nativeCopyBatch([
      { src: b(a), rel: b('a.bin'), meta: meta(100 * 1024), transferId: tid() },
      { src: b(c), rel: b('c.bin'), meta: meta(200 * 1024), transferId: tid() },
    ]);
    assert.equal(ra, null);
    assert.ok(rc && noSpace('c.bin')(rc));
    assert.deepEqual(fs.readdirSync(mnt), ['a.bin']);
    await ap.remove(b('a.bin'));
  });

  it('a small buffered file reports SC_ERR_NO_SPACE at commit', async () => {
    const filler = await ap.createFile(b('filler'), meta(SMALL_FILE_MAX + 100 * 1024), tid());
    await filler.write(randomBytes(SMALL_FILE_MAX + 100 * 1024), 0).catch(() => {});
    const size = 60 * 1024;
    const pf = await ap.createFile(b('small.bin'), meta(size), tid());
    await pf.write(randomBytes(size), 0);
    await assert.rejects(pf.commit(), noSpace('small.bin'));
    await filler.discard();
    assert.deepEqual(leftovers(), []);
    assert.deepEqual(fs.readdirSync(mnt), []);
  });
});
