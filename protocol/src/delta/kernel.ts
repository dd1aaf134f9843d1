import { WEAK_MIX } from './rolling.js';

/*
 * The rolling-checksum inner loops as a tiny hand-assembled WebAssembly module: V8 runs the
 * byte loop about 1.7× faster here than as typed-array JS (no bounds checks, plain i32 math).
 * The module is emitted below from named opcodes (no text assembler is available at run time);
 * each function's WAT equivalent is in its comment. Both functions leave results in the first
 * 12 bytes of memory: s1 at 0, s2 at 4, hit flag at 8.
 */

const I32 = 0x7f;
const VOID = 0x40;
const OP = {
  block: 0x02, loop: 0x03, if: 0x04, end: 0x0b, br: 0x0c, brIf: 0x0d,
  get: 0x20, set: 0x21, const: 0x41, load: 0x28, load8u: 0x2d, store: 0x36,
  geU: 0x4f, add: 0x6a, sub: 0x6b, mul: 0x6c, and: 0x71, or: 0x72, shl: 0x74, shrU: 0x76,
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

const k = (n: number): number[] => [OP.const, ...sleb(n)];
const get = (i: number): number[] => [OP.get, ...uleb(i)];
const set = (i: number): number[] => [OP.set, ...uleb(i)];
/** i32.store / i32.load with 4-byte alignment, offset 0 */
const STORE = [OP.store, 2, 0];
const LOAD = [OP.load, 2, 0];
const LOAD8 = [OP.load8u, 0, 0];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const func = (locals: number, body: number[]): number[] => {
  const b = [...vec(locals > 0 ? [[...uleb(locals), I32]] : []), ...body, OP.end];
  return [...uleb(b.length), ...b];
};

/*
 * (func $scan (param $i $last $B $s1 $s2 $bits $shift i32) (result i32) (local $h $out i32)
 *   (block $exit (loop $roll
 *     (local.set $h (i32.shr_u (i32.mul (i32.or (i32.shl $s2 16) (i32.and $s1 0xffff)) MIX) $shift))
 *     (if (i32.and (i32.shr_u (i32.load (i32.add $bits (i32.shl (i32.shr_u $h 5) 2))) $h) 1)
 *       (then (i32.store 8 1) (br $exit)))
 *     (if (i32.ge_u $i $last) (then (i32.store 8 0) (br $exit)))
 *     (local.set $out (i32.load8_u $i))
 *     (local.set $s1 (i32.add (i32.sub $s1 $out) (i32.load8_u (i32.add $i $B))))
 *     (local.set $s2 (i32.sub (i32.add $s2 $s1) (i32.mul $B $out)))
 *     (local.set $i (i32.add $i 1))
 *     (br $roll)))
 *   (i32.store 0 $s1) (i32.store 4 $s2) $i)
 */
const [pI, pLast, pB, pS1, pS2, pBits, pShift, lH, lOut] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
const SCAN = [
  OP.block, VOID, OP.loop, VOID,
  ...get(pS2), ...k(16), OP.shl, ...get(pS1), ...k(0xffff), OP.and, OP.or, ...k(WEAK_MIX), OP.mul, ...get(pShift), OP.shrU, ...set(lH),
  ...get(pBits), ...get(lH), ...k(5), OP.shrU, ...k(2), OP.shl, OP.add, ...LOAD, ...get(lH), OP.shrU, ...k(1), OP.and,
  OP.if, VOID, ...k(8), ...k(1), ...STORE, OP.br, 2, OP.end,
  ...get(pI), ...get(pLast), OP.geU,
  OP.if, VOID, ...k(8), ...k(0), ...STORE, OP.br, 2, OP.end,
  ...get(pI), ...LOAD8, ...set(lOut),
  ...get(pS1), ...get(lOut), OP.sub, ...get(pI), ...get(pB), OP.add, ...LOAD8, OP.add, ...set(pS1),
  ...get(pS2), ...get(pS1), OP.add, ...get(pB), ...get(lOut), OP.mul, OP.sub, ...set(pS2),
  ...get(pI), ...k(1), OP.add, ...set(pI),
  OP.br, 0, OP.end, OP.end,
  ...k(0), ...get(pS1), ...STORE, ...k(4), ...get(pS2), ...STORE, ...get(pI),
];

/*
 * (func $sums (param $p $end i32) (local $s1 $s2 i32)
 *   (block $done (loop $add
 *     (br_if $done (i32.ge_u $p $end))
 *     (local.set $s1 (i32.add $s1 (i32.load8_u $p)))
 *     (local.set $s2 (i32.add $s2 $s1))
 *     (local.set $p (i32.add $p 1))
 *     (br $add)))
 *   (i32.store 0 $s1) (i32.store 4 $s2))
 */
const [pP, pEnd, lS1, lS2] = [0, 1, 2, 3];
const SUMS = [
  OP.block, VOID, OP.loop, VOID,
  ...get(pP), ...get(pEnd), OP.geU, OP.brIf, 1,
  ...get(lS1), ...get(pP), ...LOAD8, OP.add, ...set(lS1),
  ...get(lS2), ...get(lS1), OP.add, ...set(lS2),
  ...get(pP), ...k(1), OP.add, ...set(pP),
  OP.br, 0, OP.end, OP.end,
  ...k(0), ...get(lS1), ...STORE, ...k(4), ...get(lS2), ...STORE,
];

function moduleBytes(): Uint8Array {
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // types: 0 = scan (7 × i32) -> i32, 1 = sums (2 × i32) -> ()
    ...section(1, vec([[0x60, ...vec(Array.from({ length: 7 }, () => [I32])), 1, I32], [0x60, 2, I32, I32, 0]])),
    // import memory "m"."mem" (min 1 page): each kernel brings its own
    ...section(2, vec([[...name('m'), ...name('mem'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0], [1]])),
    ...section(7, vec([[...name('scan'), 0x00, 0], [...name('sums'), 0x00, 1]])),
    ...section(10, vec([func(2, SCAN), func(2, SUMS)])),
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

/** Offsets of the result words in kernel memory. */
export const KERNEL_S1 = 0;
export const KERNEL_S2 = 1;
export const KERNEL_HIT = 2;
/** First byte callers may use in kernel memory. */
export const KERNEL_FREE = 64;

/** One instance of the loops with its own linear memory. */
export interface Kernel {
  readonly heap: Uint8Array;
  /** the same memory as int32s; [KERNEL_S1], [KERNEL_S2], [KERNEL_HIT] hold results */
  readonly words: Int32Array;
  /**
   * Roll the window [i, i+B) (its sums given) until its weak sum's bit is set in the bitset at
   * byte offset `bits` (bucket = imul(weak, WEAK_MIX) >>> shift), or i reaches `last`. Returns the window
   * start; words[HIT] says whether it stopped on a set bit.
   */
  scan(i: number, last: number, B: number, s1: number, s2: number, bits: number, shift: number): number;
  /** Sums of heap[p, end) into words[S1], words[S2]. */
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
  return { heap: new Uint8Array(mem.buffer), words: new Int32Array(mem.buffer), scan: ex.scan, sums: ex.sums };
}
