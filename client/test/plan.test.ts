import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryType, type Entry } from '@smartcopy/protocol';
import type { ScanEntry } from '@smartcopy/agent';
import { makePlan, sameMtime, type PlanOptions, type SourceItem } from '../src/plan/plan.js';

function se(path: string, type: number, size = 0, mtimeSec = 1000, extra: Partial<ScanEntry> = {}): ScanEntry {
  return { path: Buffer.from(path), type, size, mtimeSec, mtimeNsec: 0, mode: 0o644, uid: 0, gid: 0, linkTarget: undefined, hash: undefined, ...extra };
}
function item(e: ScanEntry): SourceItem {
  const dest = e.path.length ? Buffer.from(`dst/${e.path}`) : Buffer.from('dst');
  return { entry: e, src: Buffer.from(`/src/${e.path}`), dest, display: e.path.toString() || '.' };
}
function de(path: string, type: number, size = 0, mtimeSec = 1000, extra: Partial<Entry> = {}): [string, Entry] {
  const full = path ? `dst/${path}` : 'dst';
  return [full, { path: Buffer.from(path), type, size, mtimeSec, mtimeNsec: 0, mode: 0o644, uid: 0, gid: 0, linkTarget: Buffer.alloc(0), hash: Buffer.alloc(0), ...extra }];
}
const base: PlanOptions = { incremental: false, checksum: false, deleteExtra: false, order: 'as-listed', protect: () => false };
const names = (xs: Array<{ display: string }>): string[] => xs.map((x) => x.display);

describe('planner', () => {
  const src = [se('', EntryType.DIRECTORY), se('d', EntryType.DIRECTORY), se('d/a', EntryType.FILE, 10), se('b', EntryType.FILE, 99), se('l', EntryType.SYMLINK, 0, 1000, { linkTarget: Buffer.from('b') })].map(item);

  it('copies everything by default, even unchanged files', () => {
    const dest = new Map([de('', EntryType.DIRECTORY), de('d', EntryType.DIRECTORY), de('d/a', EntryType.FILE, 10), de('b', EntryType.FILE, 99)]);
    const p = makePlan(src, dest, Buffer.from('dst'), base);
    assert.deepEqual(names(p.files), ['d/a', 'b']);
    assert.deepEqual(names(p.mkdirs), [], 'existing directories are not recreated');
    assert.deepEqual(names(p.dirMeta), ['d', '.'], 'directory metadata deepest first');
    const noChange = makePlan(src, new Map([...dest, de('l', EntryType.SYMLINK, 0, 1000, { linkTarget: Buffer.from('b') })]), Buffer.from('dst'), { ...base, incremental: true });
    assert.deepEqual(names(noChange.dirMeta), [], 'a no-change re-sync sets no directory metadata');
    const touched = makePlan(src, new Map([...dest]), Buffer.from('dst'), { ...base, incremental: true });
    assert.deepEqual(names(touched.dirMeta), ['.'], 'the directory that gains the link is fixed up afterwards');
  });

  it('--incremental skips same size and mtime only', () => {
    const dest = new Map([de('', EntryType.DIRECTORY), de('d', EntryType.DIRECTORY), de('d/a', EntryType.FILE, 10), de('b', EntryType.FILE, 99, 1001)]);
    const p = makePlan(src, dest, Buffer.from('dst'), { ...base, incremental: true });
    assert.deepEqual(names(p.files), ['b']);
    assert.deepEqual(names(p.skipped), ['d/a']);
  });

  it('--checksum skips on equal hashes regardless of mtime', () => {
    const h = Buffer.from('12345678');
    const s = [item(se('f', EntryType.FILE, 3, 1, { hash: h })), item(se('g', EntryType.FILE, 3, 1, { hash: h }))];
    const dest = new Map([de('f', EntryType.FILE, 3, 999, { hash: h }), de('g', EntryType.FILE, 3, 1, { hash: Buffer.from('87654321') })]);
    const p = makePlan(s, dest, Buffer.from('dst'), { ...base, checksum: true });
    assert.deepEqual(names(p.skipped), ['f']);
    assert.deepEqual(names(p.files), ['g']);
  });

  it('--delete-extra deletes the topmost extra entry only and respects protection', () => {
    const dest = new Map([
      de('', EntryType.DIRECTORY),
      de('x', EntryType.DIRECTORY),
      de('x/y', EntryType.DIRECTORY),
      de('x/y/z', EntryType.FILE, 1),
      de('keep.log', EntryType.FILE, 1),
      de('gone', EntryType.FILE, 1),
    ]);
    const p = makePlan(src, dest, Buffer.from('dst'), { ...base, deleteExtra: true, protect: (rel) => rel.endsWith('.log') });
    assert.deepEqual(p.deletes.map((d) => d.display).sort(), ['dst/gone', 'dst/x']);
    assert.equal(makePlan(src, dest, Buffer.from('dst'), base).deletes.length, 0, 'nothing deleted without the flag');
  });

  it('a type change removes the old entry first, with or without --delete-extra', () => {
    const dest = new Map([de('d', EntryType.FILE, 5), de('b', EntryType.DIRECTORY)]);
    const p = makePlan(src, dest, Buffer.from('dst'), base);
    assert.deepEqual(p.deletes.map((d) => [d.display, d.typeChange]).sort(), [['b', true], ['d', true]]);
    assert.ok(names(p.mkdirs).includes('d'));
  });

  it('orders files as asked', () => {
    const s = [se('m', EntryType.FILE, 50), se('s', EntryType.FILE, 1), se('l', EntryType.FILE, 900)].map(item);
    assert.deepEqual(names(makePlan(s, new Map(), Buffer.from('dst'), { ...base, order: 'largest-first' }).files), ['l', 'm', 's']);
    assert.deepEqual(names(makePlan(s, new Map(), Buffer.from('dst'), { ...base, order: 'smallest-first' }).files), ['s', 'm', 'l']);
    assert.deepEqual(names(makePlan(s, new Map(), Buffer.from('dst'), { ...base, order: 'as-listed' }).files), ['m', 's', 'l']);
  });

  it('compares mtimes to the microsecond', () => {
    assert.ok(sameMtime({ mtimeSec: 5, mtimeNsec: 100 }, { mtimeSec: 5, mtimeNsec: 900 }));
    assert.ok(!sameMtime({ mtimeSec: 5, mtimeNsec: 0 }, { mtimeSec: 5, mtimeNsec: 2000 }));
    assert.ok(!sameMtime({ mtimeSec: 5, mtimeNsec: 0 }, { mtimeSec: 6, mtimeNsec: 0 }));
  });

  it('unsupported entry types are reported, not copied', () => {
    const p = makePlan([item(se('fifo', EntryType.OTHER))], new Map(), Buffer.from('dst'), base);
    assert.deepEqual(names(p.unsupported), ['fifo']);
    assert.equal(p.files.length, 0);
  });
});
