import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PathEscapeError, SmartcopyError } from '@smartcopy/protocol';
import { PathJail, checkRelative } from '../src/jail/jail.js';

let tmp: string;
let root: string;
let outside: string;
let jail: PathJail;
before(async () => {
  tmp = await fs.promises.realpath(await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sc-jail-')));
  root = path.join(tmp, 'root');
  outside = path.join(tmp, 'outside');
  await fs.promises.mkdir(root);
  await fs.promises.mkdir(outside);
  jail = await PathJail.open(root);
});
after(async () => {
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const b = (s: string): Buffer => Buffer.from(s);
const isEscape = (e: unknown): boolean => e instanceof PathEscapeError && e.code === 'SC_ERR_PATH_ESCAPE';
const hasCode = (code: string) => (e: unknown): boolean => e instanceof SmartcopyError && e.code === code;

describe('PathJail.open', () => {
  it('resolves the root to its realpath', async () => {
    const link = path.join(tmp, 'root-link');
    await fs.promises.symlink(root, link);
    const j = await PathJail.open(link);
    assert.equal(j.root, root);
    assert.equal(j.rootBuf.toString(), root);
  });

  it('a missing root is SC_ERR_DEST_INVALID unless create is set', async () => {
    const missing = path.join(tmp, 'new', 'deeper');
    await assert.rejects(PathJail.open(missing), hasCode('SC_ERR_DEST_INVALID'));
    const j = await PathJail.open(missing, { create: true });
    assert.ok(fs.statSync(j.root).isDirectory());
  });

  it('a root that is a file is SC_ERR_DEST_INVALID', async () => {
    const f = path.join(tmp, 'file-root');
    await fs.promises.writeFile(f, 'x');
    await assert.rejects(PathJail.open(f), hasCode('SC_ERR_DEST_INVALID'));
  });
});

describe('PathJail.resolve (syntactic)', () => {
  it("maps '' to the root and relative paths below it", () => {
    assert.equal(jail.resolve(b('')).toString(), root);
    assert.equal(jail.resolve(b('a/b.txt')).toString(), `${root}/a/b.txt`);
    assert.equal(jail.resolve(b('..a/b..')).toString(), `${root}/..a/b..`);
    assert.equal(jail.resolve(b('.hidden')).toString(), `${root}/.hidden`);
  });

  for (const bad of ['/etc/passwd', '..', '../x', 'a/../../x', 'a/..', '.', './a', 'a/./b', 'a//b', 'a/', '/']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => jail.resolve(b(bad)), isEscape);
      assert.throws(() => checkRelative(b(bad)), isEscape);
    });
  }

  it('refuses NUL bytes', () => {
    assert.throws(() => jail.resolve(new Uint8Array([0x61, 0x00, 0x62])), isEscape);
  });

  it('keeps names that are not UTF-8 byte for byte', () => {
    const rel = new Uint8Array([0x66, 0xff, 0x2e, 0x62]);
    const abs = jail.resolve(rel);
    assert.deepEqual([...abs.subarray(abs.length - 4)], [...rel]);
  });
});

describe('PathJail.ensureParent', () => {
  it('creates missing ancestors and returns the path of rel itself', async () => {
    const abs = await jail.ensureParent(b('x/y/z/file'), { create: true });
    assert.equal(abs.toString(), `${root}/x/y/z/file`);
    const st = fs.statSync(`${root}/x/y/z`);
    assert.ok(st.isDirectory());
    assert.equal(st.mode & 0o777, 0o755 & ~process.umask());
    assert.equal(fs.existsSync(`${root}/x/y/z/file`), false);
  });

  it('without create, a missing ancestor is SC_ERR_NOT_FOUND and nothing is created', async () => {
    await assert.rejects(jail.ensureParent(b('nope/deeper/f'), { create: false }), hasCode('SC_ERR_NOT_FOUND'));
    assert.equal(fs.existsSync(`${root}/nope`), false);
  });

  it('a file for an ancestor is refused', async () => {
    fs.writeFileSync(`${root}/plainfile`, 'x');
    await assert.rejects(jail.ensureParent(b('plainfile/f'), { create: true }), hasCode('SC_ERR_DEST_INVALID'));
    await assert.rejects(jail.ensureParent(b('plainfile/f'), { create: false }), hasCode('SC_ERR_NOT_FOUND'));
  });

  it('refuses a parent that is a symlink to a directory outside the root', async () => {
    fs.symlinkSync(outside, `${root}/evil`);
    await assert.rejects(jail.ensureParent(b('evil/pwned'), { create: true }), isEscape);
    await assert.rejects(jail.ensureParent(b('evil/sub/pwned'), { create: true }), isEscape);
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it('refuses a symlinked parent even when it points inside the root', async () => {
    fs.mkdirSync(`${root}/real`);
    fs.symlinkSync('real', `${root}/alias`);
    await assert.rejects(jail.ensureParent(b('alias/f'), { create: false }), isEscape);
  });

  it('does not look at the final component (it may be a symlink to be replaced)', async () => {
    fs.symlinkSync(outside, `${root}/final-link`);
    assert.equal((await jail.ensureParent(b('final-link'), { create: false })).toString(), `${root}/final-link`);
  });

  it('forgets a checked directory after invalidate(), so a swap to a symlink is caught', async () => {
    await jail.ensureParent(b('swap/f'), { create: true });
    assert.ok(jail.parentKnown(b('swap/f')));
    fs.rmSync(`${root}/swap`, { recursive: true });
    fs.symlinkSync(outside, `${root}/swap`);
    jail.invalidate(b('swap'));
    assert.equal(jail.parentKnown(b('swap/f')), false);
    await assert.rejects(jail.ensureParent(b('swap/f'), { create: true }), isEscape);
  });

  it('invalidate drops the whole subtree', async () => {
    await jail.ensureParent(b('t1/t2/t3/f'), { create: true });
    assert.ok(jail.dirKnown('t1/t2/t3'));
    jail.invalidate(b('t1/t2'));
    assert.ok(jail.dirKnown('t1'));
    assert.equal(jail.dirKnown('t1/t2'), false);
    assert.equal(jail.dirKnown('t1/t2/t3'), false);
  });

  it('concurrent callers creating the same directories all succeed', async () => {
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => jail.ensureParent(b(`c1/c2/c3/f${i}`), { create: true })));
    assert.equal(all.length, 50);
    assert.ok(fs.statSync(`${root}/c1/c2/c3`).isDirectory());
  });

  it('a failed check without create does not spoil a concurrent one with create', async () => {
    const [a, c] = await Promise.allSettled([
      jail.ensureParent(b('race/d/f'), { create: false }),
      jail.ensureParent(b('race/d/g'), { create: true }),
    ]);
    assert.equal(c.status, 'fulfilled');
    assert.ok(a.status === 'rejected' || a.status === 'fulfilled');
    assert.ok(fs.statSync(`${root}/race/d`).isDirectory());
  });
});

describe('PathJail.openNoFollow', () => {
  it('refuses to write through a final symlink', async () => {
    const target = path.join(outside, 'victim');
    fs.writeFileSync(target, 'precious');
    fs.symlinkSync(target, `${root}/victim-link`);
    await assert.rejects(jail.openNoFollow(b('victim-link'), fs.constants.O_WRONLY | fs.constants.O_TRUNC), isEscape);
    assert.equal(fs.readFileSync(target, 'utf8'), 'precious');
  });

  it('opens a regular file', async () => {
    fs.writeFileSync(`${root}/regular`, 'abc');
    const { fd, abs } = await jail.openNoFollow(b('regular'), fs.constants.O_RDONLY);
    try {
      assert.equal(abs.toString(), `${root}/regular`);
      assert.equal(fs.fstatSync(fd).size, 3);
    } finally {
      fs.closeSync(fd);
    }
  });
});
