import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  KERNEL_PREFILTER,
  KERNEL_HIT,
  KERNEL_S1,
  KERNEL_S2,
  createKernel,
  prefilterMask,
  type Kernel,
} from '../src/delta/kernel.js';
import { BasisSignature, Matcher, SignatureBuilder, WEAK_MIX, applyDelta, initCodecs, windowSums, type DeltaBatch } from '../src/index.js';

/*
 * The WebAssembly scan against a plain JS model of it. The kernel rolls sixteen windows at a
 * time, keeps a prefilter and walks the block chains itself; none of that may change which
 * windows it stops at. The matcher's own tests would mostly pass with a broken fast path
 * (matches found at the one offset the scan checks before rolling), so these pin it directly.
 */

const SEED = 0x5eedn;

/** Tables laid out as the matcher lays them out: prefilter, chain heads, next, weak sums, then data. */
interface Layout {
  k: Kernel;
  B: number;
  wordShift: number;
  tableShift: number;
  head: Int32Array;
  next: Int32Array;
  weak: Int32Array;
  words: Uint16Array;
  chain: number;
  dataAt: number;
}

function layout(B: number, blocks: number, dataBytes: number, chain = 64): Layout {
  const wordBits = 10;
  const tableBits = 6;
  const headAt = KERNEL_PREFILTER + 2 * 2 ** wordBits;
  const nextAt = headAt + 4 * 2 ** tableBits;
  const weakAt = nextAt + 4 * blocks;
  const dataAt = weakAt + 4 * blocks;
  const k = createKernel(dataAt + dataBytes + 64);
  const buf = k.heap.buffer;
  const l: Layout = {
    k,
    B,
    wordShift: 32 - wordBits,
    tableShift: 32 - tableBits,
    head: new Int32Array(buf, headAt, 2 ** tableBits).fill(-1),
    next: new Int32Array(buf, nextAt, blocks).fill(-1),
    weak: new Int32Array(buf, weakAt, blocks),
    words: new Uint16Array(buf, KERNEL_PREFILTER, 2 ** wordBits),
    chain,
    dataAt,
  };
  k.configure({ B, wordShift: l.wordShift, head: headAt, tableShift: l.tableShift, next: nextAt, weak: weakAt, blocks, chain });
  return l;
}

/** Block `b` gets weak sum `w`, at the front of its chain (as Matcher.buildIndex does). */
function addBlock(l: Layout, b: number, w: number): void {
  const m = Math.imul(w, WEAK_MIX);
  l.words[m >>> l.wordShift]! |= prefilterMask(w);
  l.weak[b] = w;
  const t = m >>> l.tableShift;
  l.next[b] = l.head[t]!;
  l.head[t] = b;
}

const sums = new Int32Array(2);
function weakAt(heap: Uint8Array, p: number, B: number): number {
  windowSums(heap, p, p + B, sums);
  return (sums[1]! << 16) | (sums[0]! & 0xffff);
}

/** What probe accepts: the sequential block, or a chain entry within the cap, with this weak sum. */
function candidate(l: Layout, w: number, want: number): boolean {
  if (want >= 0 && want < l.weak.length && l.weak[want] === w) return true;
  const m = Math.imul(w, WEAK_MIX);
  for (let j = l.head[m >>> l.tableShift]!, n = 0; j >= 0 && n < l.chain; j = l.next[j]!, n++) if (l.weak[j] === w) return true;
  return false;
}

/** Every window start in [from, last] the kernel stops at, continuing past each stop. */
function kernelStops(l: Layout, from: number, last: number, want: number): number[] {
  const { k, B } = l;
  const stops: number[] = [];
  let i = from;
  while (i <= last) {
    k.sums(i, i + B);
    const s1 = k.words[KERNEL_S1]!;
    const s2 = k.words[KERNEL_S2]!;
    i = k.scan(i, last, s1, s2, want);
    if (k.words[KERNEL_HIT] === 0) {
      assert.equal(i, last, 'a scan without a stop ends at the last window');
      break;
    }
    // the sums it reports are the stopping window's (low 16 bits)
    const w = weakAt(k.heap, i, B);
    assert.equal(((k.words[KERNEL_S2]! << 16) | (k.words[KERNEL_S1]! & 0xffff)) | 0, w, `sums at ${i}`);
    stops.push(i);
    i++;
  }
  return stops;
}

function modelStops(l: Layout, from: number, last: number, want: number): number[] {
  const stops: number[] = [];
  for (let p = from; p <= last; p++) if (candidate(l, weakAt(l.k.heap, p, l.B), want)) stops.push(p);
  return stops;
}

function fill(heap: Uint8Array, at: number, n: number, seed: number, alphabet: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    heap[at + i] = alphabet >= 256 ? x & 0xff : (x >>> 0) % alphabet;
  }
}

describe('delta kernel: scan', () => {
  it('stops exactly where the JS model does: random data, blocks taken from it at random offsets', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 2000 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: -1, max: 45 }),
        fc.constantFrom(256, 3, 2),
        fc.nat(),
        (B, extra, picks, want, alphabet, seed) => {
          const n = B + extra;
          const l = layout(B, picks.length, n);
          fill(l.k.heap, l.dataAt, n, seed, alphabet);
          const last = l.dataAt + n - B;
          picks.forEach((p, b) => addBlock(l, b, weakAt(l.k.heap, l.dataAt + (p % (n - B + 1)), B)));
          assert.deepEqual(kernelStops(l, l.dataAt, last, want), modelStops(l, l.dataAt, last, want));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('finds a block at every offset within and across the 16-window groups', () => {
    const B = 64;
    const n = 4096;
    for (let p = 0; p < 40; p++) {
      const l = layout(B, 1, n);
      fill(l.k.heap, l.dataAt, n, 1234, 256);
      addBlock(l, 0, weakAt(l.k.heap, l.dataAt + 100 + p, B));
      const stops = kernelStops(l, l.dataAt, l.dataAt + n - B, -1);
      assert.ok(stops.includes(l.dataAt + 100 + p), `offset ${100 + p}: stops ${stops.map((s) => s - l.dataAt)}`);
    }
  });

  it('the sequential block counts even when it is in no chain', () => {
    const B = 50;
    const n = 1000;
    const l = layout(B, 2, n);
    fill(l.k.heap, l.dataAt, n, 99, 256);
    const w = weakAt(l.k.heap, l.dataAt + 333, B);
    // block 1 has the weak sum but sits in no chain; only `want` reaches it
    const m = Math.imul(w, WEAK_MIX);
    l.words[m >>> l.wordShift]! |= prefilterMask(w);
    l.weak[1] = w;
    assert.ok(!kernelStops(l, l.dataAt, l.dataAt + n - B, -1).includes(l.dataAt + 333));
    assert.ok(kernelStops(l, l.dataAt, l.dataAt + n - B, 1).includes(l.dataAt + 333));
  });

  it('walks at most `chain` entries of a chain', () => {
    const B = 40;
    const n = 800;
    const target = 500;
    for (const [depth, found] of [
      [10, true],
      [63, true],
      [64, false],
      [100, false],
    ] as const) {
      const l = layout(B, 120, n);
      fill(l.k.heap, l.dataAt, n, 5, 256);
      const w = weakAt(l.k.heap, l.dataAt + target, B);
      // a chain of `depth` other weak sums in front of the one that matches, all in w's bucket
      const t = Math.imul(w, WEAK_MIX) >>> l.tableShift;
      l.words[Math.imul(w, WEAK_MIX) >>> l.wordShift]! |= prefilterMask(w);
      l.weak[0] = w;
      l.next[0] = -1;
      let headBlock = 0;
      for (let b = 1; b <= depth; b++) {
        l.weak[b] = w ^ (b << 3);
        l.next[b] = headBlock;
        headBlock = b;
      }
      l.head[t] = headBlock;
      const stops = kernelStops(l, l.dataAt, l.dataAt + n - B, -1);
      assert.equal(stops.includes(l.dataAt + target), found, `depth ${depth}`);
    }
  });
});

describe('delta kernel: sums', () => {
  it('equal the bytewise sums (s1 exact, s2 modulo 2^32) for any length and alignment', () => {
    const k = createKernel(1 << 20);
    fill(k.heap, 1000, 300_000, 77, 256);
    const js = new Int32Array(2);
    for (const [at, len] of [[1000, 0], [1001, 1], [1003, 15], [1000, 16], [1007, 17], [1000, 255], [1013, 4099], [1000, 131_072], [1005, 262_147]] as const) {
      k.sums(at, at + len);
      windowSums(k.heap, at, at + len, js);
      assert.equal(k.words[KERNEL_S1], js[0], `s1 of ${len} at ${at}`);
      assert.equal(k.words[KERNEL_S2]! | 0, js[1]! | 0, `s2 of ${len} at ${at}`);
    }
  });
});

describe('delta matcher: a shifted copy is found at every offset', () => {
  it('a basis behind a prefix of 0..40 bytes: all blocks copied, only the prefix literal', async () => {
    await initCodecs();
    let x = 7;
    const basis = Buffer.alloc(96 * 1024, 0).map(() => (x = (x * 1103515245 + 12345) >>> 0) >>> 24);
    const b = new SignatureBuilder(basis.length, SEED, { blockSize: 1000 });
    b.update(basis);
    const sig = new BasisSignature(b.params).addSums(b.takeSums()).addSums(b.finish());
    for (let r = 0; r <= 40; r++) {
      const target = Buffer.concat([Buffer.alloc(r, 0xab), basis]);
      const m = new Matcher(sig, { seed: SEED });
      const batches: DeltaBatch[] = [...m.update(target)];
      const res = m.finish();
      batches.push(...res.batches);
      assert.equal(res.stats.literalBytes, r, `prefix ${r}`);
      assert.ok(applyDelta(basis, batches).equals(target));
    }
  });
});
