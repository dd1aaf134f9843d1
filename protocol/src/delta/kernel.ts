import { SmartcopyError } from '../errors.js';
import { WEAK_MIX } from './rolling.js';

/*
 * The rolling-checksum inner loops as a small hand-assembled WebAssembly module (no text
 * assembler is available at run time, so it is emitted from named opcodes below; each function
 * carries its WAT-like outline in a comment).
 *
 * Why it looks the way it does (2-core dev machine, matching 256 MiB of unrelated data):
 * - A scalar loop (roll one byte, probe a bitset) topped out near 480 MiB/s, and returning to
 *   JS on each bitset hit (1 offset in ~128) cost as much again: the matcher ran at ~300 MiB/s
 *   (~700 MiB/s with what follows).
 * - Only the low 16 bits of s1 and s2 make up the weak sum, and the roll is exact modulo 2^16,
 *   so eight windows fit in one i16x8: their s1 are a prefix sum of (in - out) and their s2 a
 *   prefix sum of (s1 - B·out). Interleaving the two vectors yields eight int32 weak sums.
 *   `scan` does sixteen windows (two vectors) per step.
 * - The prefilter is probed for all sixteen at once. Wasm has no gather, so the sixteen 16-bit
 *   words are loaded into lanes one by one (v128.load16_lane); each window's four mask bits
 *   come from its s1 by one shift and two swizzles, so the test is a handful of vector ops.
 *   The loads dominate what is left; a smaller prefilter (16-bit words holding four bits a
 *   block, a partitioned Bloom filter) stays in cache where a bigger one-bit bitset did not.
 * - Windows that pass the prefilter are checked against the block table (full weak sum, chain
 *   cap, next sequential block) inside the module; JS sees only real weak-sum matches.
 * - `sums` (a fresh window, the signature's block sums) runs 16 bytes a step with two i16 dot
 *   products.
 */

const I32 = 0x7f;
const V128 = 0x7b;
const VOID = 0x40;
const OP = {
  return: 0x0f, call: 0x10, get: 0x20, set: 0x21, tee: 0x22, const: 0x41, load: 0x28, load8u: 0x2d, load16u: 0x2f, store: 0x36,
  eqz: 0x45, eq: 0x46, ne: 0x47, ctz: 0x68, ltS: 0x48, ltU: 0x49, gtU: 0x4b, geU: 0x4f,
  add: 0x6a, sub: 0x6b, mul: 0x6c, and: 0x71, or: 0x72, shl: 0x74, shrU: 0x76,
} as const;
/** simd128 opcodes (after the 0xfd prefix) */
const V = {
  load: 0x00, load8x8u: 0x02, store: 0x0b, const: 0x0c, shuffle: 0x0d, swizzle: 0x0e,
  i16splat: 0x10, i16extractU: 0x19, i32extract: 0x1b, i16eq: 0x2d,
  and: 0x4e, andnot: 0x4f, or: 0x50, load16lane: 0x55,
  i16extaddU: 0x7d, i32extaddU: 0x7f, i16allTrue: 0x83, i16bitmask: 0x84, i16extendLowU: 0x89, i16extendHighU: 0x8a,
  i16shrU: 0x8d, i16add: 0x8e, i16sub: 0x91, i16mul: 0x95, i16minU: 0x97,
  i32shl: 0xab, i32shrU: 0xad, i32add: 0xae, i32mul: 0xb5, i32dot: 0xba, i64shl: 0xcb,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/*
 * Structured control flow with named labels: `open`/`end` nest, and `br`/`brIf` name their
 * target; asm() turns names into the relative depths wasm wants.
 */
type Part = number | { open: number; label: string } | { end: true } | { br: number; label: string };
const open = (kind: 'block' | 'loop' | 'if', label: string): Part => ({ open: { block: 0x02, loop: 0x03, if: 0x04 }[kind], label });
const END: Part = { end: true };
const br = (label: string): Part => ({ br: 0x0c, label });
const brIf = (label: string): Part => ({ br: 0x0d, label });

function asm(parts: Part[]): number[] {
  const out: number[] = [];
  const labels: string[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if ('open' in p) {
      out.push(p.open, VOID);
      labels.push(p.label);
    } else if ('end' in p) {
      labels.pop();
      out.push(0x0b);
    } else {
      const at = labels.lastIndexOf(p.label);
      if (at < 0) throw new RangeError(`kernel assembler: no enclosing label ${p.label}`);
      out.push(p.br, ...uleb(labels.length - 1 - at));
    }
  }
  if (labels.length !== 0) throw new RangeError(`kernel assembler: unclosed ${labels.join(', ')}`);
  return out;
}

const k = (n: number): number[] => [OP.const, ...sleb(n)];
const get = (i: number): number[] => [OP.get, ...uleb(i)];
const set = (i: number): number[] => [OP.set, ...uleb(i)];
const tee = (i: number): number[] => [OP.tee, ...uleb(i)];
/** i32.load / i32.store at a constant address offset (align 4) */
const load = (offset = 0): number[] => [OP.load, 2, ...uleb(offset)];
const store = (offset = 0): number[] => [OP.store, 2, ...uleb(offset)];
const load8 = (offset = 0): number[] => [OP.load8u, 0, ...uleb(offset)];
const load16 = (offset = 0): number[] => [OP.load16u, 1, ...uleb(offset)];
const v = (op: number, ...imm: number[]): number[] => [0xfd, ...uleb(op), ...imm];
const vconst = (bytes: number[]): number[] => v(V.const, ...bytes);
const shuffle = (lanes: number[]): number[] => v(V.shuffle, ...lanes);
const i16s = (xs: number[]): number[] => xs.flatMap((x) => [x & 0xff, (x >>> 8) & 0xff]);
const i32s = (xs: number[]): number[] => xs.flatMap((x) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff]);
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, j) => from + j);
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const func = (locals: [number, number][], body: number[]): number[] => {
  const b = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...body, 0x0b];
  return [...uleb(b.length), ...b];
};

/** Memory layout: results, then the matcher's configuration, then scratch. */
export const KERNEL_S1 = 0;
export const KERNEL_S2 = 1;
export const KERNEL_HIT = 2;
const CFG = { B: 16, wordShift: 20, head: 24, tableShift: 28, next: 32, weak: 36, blocks: 40, chain: 44 } as const;
const SCRATCH = 64;
/**
 * Where `scan` expects the prefilter (a fixed place: the loop then addresses it with a
 * constant offset instead of an add per lane). It ends wherever its size says.
 */
export const KERNEL_PREFILTER = 128;
/** First byte callers may use in kernel memory (the prefilter, if any, starts here). */
export const KERNEL_FREE = 128;

/*
 * (func $probe (param $w $want i32) (result i32) (local $m $j $n i32)
 *   ;; could some basis block have weak sum $w? prefilter first, then the "next sequential block"
 *   ;; and the chain (at most `chain` entries), by full 32-bit weak sum
 *   m = w * MIX
 *   mask = prefilterMask(w)
 *   if (load16_u(PREFILTER + (m >>> wordShift)·2) & mask) != mask: return 0
 *   if want <u blocks && load(weak + want·4) == w: return 1
 *   j = load(head + (m >>> tableShift)·4); n = chain
 *   loop: if j < 0 return 0; if load(weak + j·4) == w return 1; if --n == 0 return 0; j = load(next + j·4)
 */
const PROBE = (() => {
  const [w, want, m, j, n] = [0, 1, 2, 3, 4];
  const cfg = (key: keyof typeof CFG): number[] => [...k(0), ...load(CFG[key])];
  return asm([
    ...get(w), ...k(WEAK_MIX), OP.mul, ...set(m),
    ...k(1), ...get(w), ...k(7), OP.and, OP.shl,
    ...k(1), ...get(w), ...k(3), OP.shrU, ...k(7), OP.and, OP.shl, OP.or,
    ...k(0x100), ...get(w), ...k(8), OP.shrU, ...k(7), OP.and, OP.shl, OP.or,
    ...k(0x100), ...get(w), ...k(11), OP.shrU, ...k(7), OP.and, OP.shl, OP.or, ...set(j),
    ...get(m), ...cfg('wordShift'), OP.shrU, ...k(1), OP.shl, ...load16(KERNEL_PREFILTER), ...get(j), OP.and, ...get(j), OP.ne,
    open('if', 'empty'), ...k(0), OP.return, END,
    ...get(want), ...cfg('blocks'), OP.ltU,
    open('if', 'seq'),
    ...get(want), ...k(2), OP.shl, ...cfg('weak'), OP.add, ...load(), ...get(w), OP.eq,
    open('if', 'same'), ...k(1), OP.return, END,
    END,
    ...get(m), ...cfg('tableShift'), OP.shrU, ...k(2), OP.shl, ...cfg('head'), OP.add, ...load(), ...set(j),
    ...cfg('chain'), ...set(n),
    open('loop', 'chain'),
    ...get(j), ...k(0), OP.ltS, open('if', 'out'), ...k(0), OP.return, END,
    ...get(j), ...k(2), OP.shl, ...cfg('weak'), OP.add, ...load(), ...get(w), OP.eq, open('if', 'eq'), ...k(1), OP.return, END,
    ...get(n), ...k(1), OP.sub, ...tee(n), OP.eqz, open('if', 'capped'), ...k(0), OP.return, END,
    ...get(j), ...k(2), OP.shl, ...cfg('next'), OP.add, ...load(), ...set(j),
    br('chain'),
    END,
    ...k(0),
  ]);
})();

/*
 * (func $scan (param $i $last $s1 $s2 $want i32) (result i32)
 *   ;; window [i, i+B) has sums s1, s2; stop at the first window from i on, up to `last`, that
 *   ;; $probe accepts; return its start, with s1 at 0, s2 at 4 (low 16 bits valid) and hit at 8
 *   if probe(weak(s1, s2)): found
 *   loop $outer
 *     while i + 16 <= last:                              ;; windows i+1 .. i+16 at once
 *       for each half h (windows i+1.., i+9..):           ;; eight windows per i16x8
 *         o = bytes[i+8h, +8) as i16x8; d = bytes[i+8h+B, +8) - o
 *         S1h = S1 + prefix(d); S2h = S2 + prefix(S1h - B·o); S1, S2 = lane 7 of S1h, S2h
 *       w0..w3 = interleave16(S1h, S2h)                  ;; the sixteen weak sums as i32
 *       G = gather16(PREFILTER + (w · MIX >>> wordShift)·2)  ;; one 16-bit word a window
 *       M = prefilter mask of each window, from S1h
 *       if some window has (M & ~G) == 0: leave the loop   ;; ~3% of groups
 *       i += 16
 *     (left the loop on G:) for each window k passing, in order: if probe(w[k]): i += 1 + k; s1, s2 = w[k]; found
 *       i += 16; continue $outer
 *     if i >= last: not found
 *     roll one byte (the rsync update); i += 1
 *     if probe(weak(s1, s2)): found
 */
const SCAN = (() => {
  const [i, last, s1, s2, want] = [0, 1, 2, 3, 4];
  const [B, shift, lanes, w] = [5, 6, 7, 8];
  const [S1, S2, Bv, MIXv, SEVENS, POW, G, H, A1, A2, B1, B2, t1, t2, t3, w0, w1, w2, w3] = range(9, 19);
  const ZERO = vconst(new Array(16).fill(0));
  // prefix sums over 8 i16 lanes: within each i64 half by two shifts, then lane 3 (the low
  // half's total) added to the high half; these shapes compile to single x64 instructions
  const prefix = (x: number): number[] => [
    ...get(x), ...get(x), ...k(16), ...v(V.i64shl), ...v(V.i16add), ...set(x),
    ...get(x), ...get(x), ...k(32), ...v(V.i64shl), ...v(V.i16add), ...set(x),
    ...ZERO, ...get(x), ...get(x), ...shuffle([6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7]),
    ...shuffle([...range(0, 8), ...range(16, 8)]), ...get(x), ...v(V.i16add), ...set(x),
  ];
  const bcast7 = shuffle([14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15]);
  // eight windows from the state in S1, S2 (the window before them), leaving their sums in X1, X2
  const half = (off: number, X1: number, X2: number): number[] => [
    ...get(i), ...v(V.load8x8u, 0, off), ...set(t1),
    ...get(i), ...get(B), OP.add, ...v(V.load8x8u, 0, off), ...get(t1), ...v(V.i16sub), ...set(t2),
    ...prefix(t2),
    ...get(t2), ...get(S1), ...v(V.i16add), ...tee(X1),
    ...get(t1), ...get(Bv), ...v(V.i16mul), ...v(V.i16sub), ...set(t3),
    ...prefix(t3),
    ...get(t3), ...get(S2), ...v(V.i16add), ...set(X2),
    ...get(X1), ...get(X1), ...bcast7, ...set(S1),
    ...get(X2), ...get(X2), ...bcast7, ...set(S2),
  ];
  const LO = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
  const HI = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];
  const wordAddress = (wv: number, to: number): number[] => [
    ...get(wv), ...get(MIXv), ...v(V.i32mul), ...get(shift), ...v(V.i32shrU), ...k(1), ...v(V.i32shl), ...set(to),
  ];
  // window k's prefilter word into i16 lane k of G (windows 0-7) or H (8-15)
  const gather: number[] = [...ZERO, ...set(G), ...ZERO, ...set(H)];
  const addr = [A2, t1, B2, t2];
  for (let l = 0; l < 16; l++) {
    const into = l < 8 ? G : H;
    gather.push(...get(addr[l >> 2]!), ...v(V.i32extract, l & 3), ...get(into), ...v(V.load16lane, 1, ...uleb(KERNEL_PREFILTER), l & 7), ...set(into));
  }
  // Each window's four bits as a 16-bit mask: bits 0-2 and 3-5 of s1 pick a bit of the low
  // byte, bits 8-10 and 11-13 one of the high byte; a swizzle from POW (1 << n) makes each
  // index byte its bit.
  const mask = (X: number): number[] => [
    ...get(POW), ...get(X), ...get(SEVENS), ...v(V.and), ...v(V.swizzle),
    ...get(POW), ...get(X), ...k(3), ...v(V.i16shrU), ...get(SEVENS), ...v(V.and), ...v(V.swizzle),
    ...v(V.or),
  ];
  const weakOf = (): number[] => [...get(s2), ...k(16), OP.shl, ...get(s1), ...k(0xffff), OP.and, OP.or];
  return asm([
    ...k(0), ...load(CFG.B), ...set(B),
    ...k(0), ...load(CFG.wordShift), ...set(shift),
    ...get(B), ...v(V.i16splat), ...set(Bv),
    ...vconst(i32s([WEAK_MIX, WEAK_MIX, WEAK_MIX, WEAK_MIX])), ...set(MIXv),
    ...vconst(i16s([0x707, 0x707, 0x707, 0x707, 0x707, 0x707, 0x707, 0x707])), ...set(SEVENS),
    ...vconst([1, 2, 4, 8, 16, 32, 64, 128, 0, 0, 0, 0, 0, 0, 0, 0]), ...set(POW),
    open('block', 'found'),
    open('block', 'none'),
    ...weakOf(), ...get(want), OP.call, 0, brIf('found'),
    open('loop', 'outer'),
    open('block', 'scalar'),
    ...get(i), ...k(16), OP.add, ...get(last), OP.gtU, brIf('scalar'),
    ...get(s1), ...v(V.i16splat), ...set(S1),
    ...get(s2), ...v(V.i16splat), ...set(S2),
    open('block', 'slow'),
    open('loop', 'group'),
    ...half(0, A1, A2),
    ...half(8, B1, B2),
    ...get(A1), ...get(A2), ...shuffle(LO), ...set(w0),
    ...get(A1), ...get(A2), ...shuffle(HI), ...set(w1),
    ...get(B1), ...get(B2), ...shuffle(LO), ...set(w2),
    ...get(B1), ...get(B2), ...shuffle(HI), ...set(w3),
    ...wordAddress(w0, A2), ...wordAddress(w1, t1), ...wordAddress(w2, B2), ...wordAddress(w3, t2),
    ...gather,
    // a window passes when its mask is all in its word: (mask & ~word) == 0
    ...mask(A1), ...get(G), ...v(V.andnot), ...set(G),
    ...mask(B1), ...get(H), ...v(V.andnot), ...set(H),
    ...get(G), ...get(H), ...v(V.i16minU), ...v(V.i16allTrue), OP.eqz, brIf('slow'),
    ...get(i), ...k(16), OP.add, ...tee(i), ...k(16), OP.add, ...get(last), OP.gtU, OP.eqz, brIf('group'),
    END,
    ...get(S1), ...v(V.i16extractU, 0), ...set(s1),
    ...get(S2), ...v(V.i16extractU, 0), ...set(s2),
    br('scalar'),
    END,
    // some windows among i+1 .. i+16 passed the prefilter: confirm them in order (bit k of
    // `lanes` is window i+1+k)
    ...k(SCRATCH), ...get(w0), ...v(V.store, 4, 0),
    ...k(SCRATCH), ...get(w1), ...v(V.store, 4, 16),
    ...k(SCRATCH), ...get(w2), ...v(V.store, 4, 32),
    ...k(SCRATCH), ...get(w3), ...v(V.store, 4, 48),
    ...get(G), ...ZERO, ...v(V.i16eq), ...v(V.i16bitmask),
    ...get(H), ...ZERO, ...v(V.i16eq), ...v(V.i16bitmask), ...k(8), OP.shl, OP.or, ...set(lanes),
    ...get(S1), ...v(V.i16extractU, 0), ...set(s1),
    ...get(S2), ...v(V.i16extractU, 0), ...set(s2),
    open('loop', 'lane'),
    ...get(lanes), OP.ctz, ...k(2), OP.shl, ...load(SCRATCH), ...tee(w), ...get(want), OP.call, 0,
    open('if', 'hit'),
    ...get(i), ...k(1), OP.add, ...get(lanes), OP.ctz, OP.add, ...set(i),
    ...get(w), ...k(0xffff), OP.and, ...set(s1),
    ...get(w), ...k(16), OP.shrU, ...set(s2),
    br('found'),
    END,
    ...get(lanes), ...get(lanes), ...k(1), OP.sub, OP.and, ...tee(lanes), brIf('lane'),
    END,
    ...get(i), ...k(16), OP.add, ...set(i),
    br('outer'),
    END,
    ...get(i), ...get(last), OP.geU, brIf('none'),
    ...get(i), ...load8(), ...set(w),
    ...get(s1), ...get(w), OP.sub, ...get(i), ...get(B), OP.add, ...load8(), OP.add, ...set(s1),
    ...get(s2), ...get(s1), OP.add, ...get(B), ...get(w), OP.mul, OP.sub, ...set(s2),
    ...get(i), ...k(1), OP.add, ...set(i),
    ...weakOf(), ...get(want), OP.call, 0, brIf('found'),
    br('outer'),
    END,
    END,
    ...k(KERNEL_HIT * 4), ...k(0), ...store(),
    ...k(0), ...get(s1), ...store(),
    ...k(4), ...get(s2), ...store(),
    ...get(i), OP.return,
    END,
    ...k(KERNEL_HIT * 4), ...k(1), ...store(),
    ...k(0), ...get(s1), ...store(),
    ...k(4), ...get(s2), ...store(),
    ...get(i),
  ]);
})();

/*
 * (func $sums (param $p $end i32) (local $s1 $s2 i32)
 *   ;; 16 bytes a step: s2 += 16·s1 + Σ (16-k)·x[k] (two i16 dot products), s1 += Σ x[k];
 *   ;; lane-wise partial sums add up modulo 2^32 to exactly the bytewise loop's s1 and s2
 *   while p + 16 <= end: ...
 *   s1, s2 = horizontal sums; while p < end: s1 += x[p]; s2 += s1; p++
 *   (i32.store 0 $s1) (i32.store 4 $s2))
 */
const SUMS = (() => {
  const [p, end, s1, s2] = [0, 1, 2, 3];
  const [x, S1, S2] = [4, 5, 6];
  const hsum = (vx: number, to: number): number[] => [
    ...get(vx), ...v(V.i32extract, 0), ...get(vx), ...v(V.i32extract, 1), OP.add,
    ...get(vx), ...v(V.i32extract, 2), OP.add, ...get(vx), ...v(V.i32extract, 3), OP.add, ...set(to),
  ];
  return asm([
    open('block', 'wide'),
    open('loop', 'step'),
    ...get(p), ...k(16), OP.add, ...get(end), OP.gtU, brIf('wide'),
    ...get(p), ...v(V.load, 0, 0), ...set(x),
    ...get(S2), ...get(S1), ...k(4), ...v(V.i32shl), ...v(V.i32add),
    ...get(x), ...v(V.i16extendLowU), ...vconst(i16s([16, 15, 14, 13, 12, 11, 10, 9])), ...v(V.i32dot), ...v(V.i32add),
    ...get(x), ...v(V.i16extendHighU), ...vconst(i16s([8, 7, 6, 5, 4, 3, 2, 1])), ...v(V.i32dot), ...v(V.i32add), ...set(S2),
    ...get(S1), ...get(x), ...v(V.i16extaddU), ...v(V.i32extaddU), ...v(V.i32add), ...set(S1),
    ...get(p), ...k(16), OP.add, ...set(p),
    br('step'),
    END,
    END,
    ...hsum(S1, s1), ...hsum(S2, s2),
    open('block', 'done'),
    open('loop', 'byte'),
    ...get(p), ...get(end), OP.geU, brIf('done'),
    ...get(s1), ...get(p), ...load8(), OP.add, ...set(s1),
    ...get(s2), ...get(s1), OP.add, ...set(s2),
    ...get(p), ...k(1), OP.add, ...set(p),
    br('byte'),
    END,
    END,
    ...k(0), ...get(s1), ...store(),
    ...k(4), ...get(s2), ...store(),
  ]);
})();

function moduleBytes(): Uint8Array {
  const i32s_ = (n: number): number[] => vec(Array.from({ length: n }, () => [I32]));
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // types: 0 = probe (2 × i32) -> i32, 1 = scan (5 × i32) -> i32, 2 = sums (2 × i32) -> ()
    ...section(1, vec([[0x60, ...i32s_(2), 1, I32], [0x60, ...i32s_(5), 1, I32], [0x60, ...i32s_(2), 0]])),
    // import memory "m"."mem" (min 1 page): each kernel brings its own
    ...section(2, vec([[...name('m'), ...name('mem'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0], [1], [2]])),
    ...section(7, vec([[...name('scan'), 0x00, 1], [...name('sums'), 0x00, 2]])),
    ...section(10, vec([
      func([[3, I32]], PROBE),
      func([[4, I32], [19, V128]], SCAN),
      func([[2, I32], [3, V128]], SUMS),
    ])),
  ]);
}

// lib ES2022 without DOM has no WebAssembly types; this is the little of it used here
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (desc: { initial: number }) => { buffer: ArrayBuffer };
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let compiled: object | undefined;

/**
 * The prefilter bits of weak sum `w` in its 16-bit word (the word: imul(w, WEAK_MIX) >>> wordShift):
 * two in the low byte, picked by bits 0-2 and 3-5 of s1, two in the high byte, by bits 8-10 and
 * 11-13 (a partitioned Bloom filter in one word: at 64 bits a block, 0.16% of unrelated windows
 * pass, against 0.78% for one bit a block at 128).
 */
export function prefilterMask(w: number): number {
  return (1 << (w & 7)) | (1 << ((w >>> 3) & 7)) | (0x100 << ((w >>> 8) & 7)) | (0x100 << ((w >>> 11) & 7));
}

/** Where `scan` finds the matcher's tables (byte offsets in kernel memory) and their shape. */
export interface ScanConfig {
  /** block size */
  B: number;
  /**
   * The prefilter at KERNEL_PREFILTER, 16-bit words: for every block's weak sum w, the bits
   * prefilterMask(w) of word imul(w, WEAK_MIX) >>> wordShift are set. The word comes from the
   * well-mixed high bits, the bits from s1, which the loop has at hand.
   */
  wordShift: number;
  /** int32 chain heads, indexed by imul(w, WEAK_MIX) >>> tableShift; -1 ends a chain */
  head: number;
  tableShift: number;
  /** int32 next-in-chain per block */
  next: number;
  /** int32 weak sum per block */
  weak: number;
  /** blocks in `weak` (the "next sequential block" must be below this) */
  blocks: number;
  /** most chain entries examined per offset */
  chain: number;
}

/** One instance of the loops with its own linear memory. */
export interface Kernel {
  readonly heap: Uint8Array;
  /** the same memory as int32s; [KERNEL_S1], [KERNEL_S2], [KERNEL_HIT] hold results */
  readonly words: Int32Array;
  /** Tell `scan` where its tables are (they live in this kernel's memory). */
  configure(cfg: ScanConfig): void;
  /**
   * Roll the window [i, i+B) (its sums given) until a window whose weak sum some basis block
   * may have (the prefilter says so and the block `want` or a chain entry has that exact weak
   * sum), or i reaches `last`. Returns the window start; words[HIT] says whether it stopped
   * on a candidate, words[S1] and words[S2] hold its sums (only their low 16 bits are exact).
   */
  scan(i: number, last: number, s1: number, s2: number, want: number): number;
  /** Sums of heap[p, end) into words[S1] (exact) and words[S2] (modulo 2^32). */
  sums(p: number, end: number): void;
}

interface KernelExports {
  scan: Kernel['scan'];
  sums: Kernel['sums'];
}

/** A kernel whose memory holds at least `bytes` bytes. */
export function createKernel(bytes: number): Kernel {
  compiled ??= new wasm.Module(moduleBytes());
  const mem = new wasm.Memory({ initial: Math.max(1, Math.ceil(bytes / 65536)) });
  const ex = new wasm.Instance(compiled, { m: { mem } }).exports as unknown as KernelExports;
  const words = new Int32Array(mem.buffer);
  return {
    heap: new Uint8Array(mem.buffer),
    words,
    configure(cfg: ScanConfig): void {
      // the module does no bounds checks of its own beyond the memory's: keep the tables inside it
      const ends = [
        KERNEL_PREFILTER + 2 * 2 ** (32 - cfg.wordShift),
        cfg.head + 4 * 2 ** (32 - cfg.tableShift),
        cfg.next + 4 * cfg.blocks,
        cfg.weak + 4 * cfg.blocks,
      ];
      const ok = cfg.wordShift >= 1 && cfg.wordShift <= 31 && cfg.tableShift >= 1 && cfg.tableShift <= 31 && cfg.chain >= 1 && cfg.B >= 1;
      if (!ok || ends.some((end) => end > mem.buffer.byteLength)) {
        throw new SmartcopyError('SC_ERR_INTERNAL', `delta kernel: tables do not fit its ${mem.buffer.byteLength} B of memory (${JSON.stringify(cfg)})`);
      }
      for (const key of Object.keys(CFG) as (keyof typeof CFG)[]) words[CFG[key] >> 2] = cfg[key];
    },
    scan: ex.scan,
    sums: ex.sums,
  };
}
