import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BasisSignature,
  DeltaOpKind,
  Matcher,
  PatchPlanner,
  ProtocolError,
  SignatureBuilder,
  SmartcopyError,
  applyDelta,
  chooseBlockSize,
  chooseStrongLength,
  computeSignature,
  deltaOpsFrame,
  hashBuffer,
  initCodecs,
  planPatch,
  readDeltaOpsFrame,
  readSignatureFrame,
  signatureFrames,
  signatureParams,
  weakSum,
  xxh64,
  type DeltaBatch,
  type MatchStats,
  type SignatureOptions,
} from '../src/index.js';

const SEED = 0x1234_5678_9abcn;
const MIB = 1024 * 1024;

/** Split `data` into pieces of the given sizes (cycled), as a reader with odd read sizes would. */
function* pieces(data: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  if (sizes.length === 0) sizes = [data.length || 1];
  for (let at = 0, k = 0; at < data.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]!);
    yield data.subarray(at, at + n);
    at += n;
  }
}

interface RoundTrip {
  sig: BasisSignature;
  batches: DeltaBatch[];
  stats: MatchStats;
  out: Buffer;
}

/** The whole exchange: signature in pieces → Signature frames → matcher in pieces → DeltaOps frames → patch. */
async function roundTrip(
  basis: Uint8Array,
  target: Uint8Array,
  opts: SignatureOptions & { basisPieces?: number[]; targetPieces?: number[]; maxLiteralBytes?: number; maxOps?: number } = {},
): Promise<RoundTrip> {
  const builder = new SignatureBuilder(basis.length, SEED, opts);
  let sig: BasisSignature | null = null;
  const ship = (sums: Buffer): void => {
    for (const f of signatureFrames(7, builder.params, sums, 100)) {
      assert.equal(f.header.fileId, 7);
      sig = readSignatureFrame({ ...f.header }, Buffer.from(f.payload), sig);
    }
  };
  for (const p of pieces(basis, opts.basisPieces ?? [])) {
    builder.update(p);
    ship(builder.takeSums());
  }
  ship(builder.finish());
  assert.ok(sig !== null);
  const full: BasisSignature = sig;
  assert.ok(full.complete, 'signature complete');

  const m = await Matcher.create(full, { seed: SEED, maxLiteralBytes: opts.maxLiteralBytes, maxOps: opts.maxOps });
  const batches: DeltaBatch[] = [];
  const wire = (bs: readonly DeltaBatch[]): void => {
    for (const b of bs) {
      const f = deltaOpsFrame(9, b);
      assert.equal(f.header.rawLength, f.payload.length);
      // what the frame decoder would hand over: copies, not the sender's objects
      const ops = f.header.ops.map((o) => ({ ...o }));
      batches.push(readDeltaOpsFrame({ ...f.header, ops }, Buffer.from(f.payload)));
    }
  };
  for (const p of pieces(target, opts.targetPieces ?? [])) wire(m.update(p));
  const res = m.finish();
  wire(res.batches);
  assert.deepEqual(res.hash, await hashBuffer('xxhash64', target), 'whole-file hash');
  const out = applyDelta(basis, batches, { blockSize: full.blockSize, expectedSize: target.length });
  return { sig: full, batches, stats: res.stats, out };
}

function literalBytes(batches: DeltaBatch[]): number {
  let n = 0;
  for (const b of batches) for (const op of b.ops) if (op.kind === DeltaOpKind.LITERAL) n += op.length;
  return n;
}

const rand = (n: number): Buffer => randomFillSync(Buffer.allocUnsafe(n));

/** Edits that rsync users make to files: overwrite, insert, delete, move, truncate, grow. */
type Edit =
  | { t: 'overwrite'; at: number; data: Uint8Array }
  | { t: 'insert'; at: number; data: Uint8Array }
  | { t: 'delete'; at: number; len: number }
  | { t: 'move'; from: number; len: number; to: number }
  | { t: 'truncate'; at: number }
  | { t: 'grow'; data: Uint8Array };

function applyEdits(src: Uint8Array, edits: Edit[]): Buffer {
  let b = Buffer.from(src);
  for (const e of edits) {
    const pos = (x: number): number => (b.length === 0 ? 0 : x % (b.length + 1));
    switch (e.t) {
      case 'overwrite': {
        const at = pos(e.at);
        b = Buffer.concat([b.subarray(0, at), e.data, b.subarray(Math.min(b.length, at + e.data.length))]);
        break;
      }
      case 'insert': {
        const at = pos(e.at);
        b = Buffer.concat([b.subarray(0, at), e.data, b.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = pos(e.at);
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + e.len))]);
        break;
      }
      case 'move': {
        const from = pos(e.from);
        const piece = Buffer.from(b.subarray(from, Math.min(b.length, from + e.len)));
        const rest = Buffer.concat([b.subarray(0, from), b.subarray(from + piece.length)]);
        const to = rest.length === 0 ? 0 : e.to % (rest.length + 1);
        b = Buffer.concat([rest.subarray(0, to), piece, rest.subarray(to)]);
        break;
      }
      case 'truncate':
        b = b.subarray(0, pos(e.at));
        break;
      case 'grow':
        b = Buffer.concat([b, e.data]);
        break;
    }
  }
  return b;
}

const bytesArb = (max: number) =>
  fc.oneof(
    fc.uint8Array({ maxLength: max }),
    // few distinct bytes: repeated blocks and weak-sum collisions are common
    fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: max }).map((a) => Uint8Array.from(a)),
  );

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ t: fc.constant('overwrite' as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
  fc.record({ t: fc.constant('insert' as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
  fc.record({ t: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ t: fc.constant('move' as const), from: fc.nat(), len: fc.integer({ min: 1, max: 500 }), to: fc.nat() }),
  fc.record({ t: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ t: fc.constant('grow' as const), data: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
);

const piecesArb = fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 6 });

describe('delta: block and strong sizes', () => {
  it('block size follows rsync: 700 B up to 490,000 B, then ~√len in multiples of 8, capped at 128 KiB', () => {
    assert.equal(chooseBlockSize(0), 700);
    assert.equal(chooseBlockSize(490_000), 700);
    assert.equal(chooseBlockSize(490_001), 700);
    assert.equal(chooseBlockSize(1_000_000), 1000);
    assert.equal(chooseBlockSize(64 * MIB), 8192);
    assert.equal(chooseBlockSize(2 ** 30), 32768);
    assert.equal(chooseBlockSize(2 ** 40), 128 * 1024);
    for (const n of [1_234_567, 99_999_999, 5e9]) {
      const b = chooseBlockSize(n);
      assert.equal(b % 8, 0);
      assert.ok(b * b <= n && (b + 8) ** 2 > n, `${n}: ${b}`);
    }
  });

  it('strong length grows with the file and stays within 2..8 bytes', () => {
    assert.equal(chooseStrongLength(0, 700), 2);
    assert.ok(chooseStrongLength(2 ** 30, 32768) >= 4);
    assert.ok(chooseStrongLength(2 ** 40, 131072) > chooseStrongLength(2 ** 30, 32768));
    assert.equal(chooseStrongLength(2 ** 52, 1), 8);
  });

  it('rejects out-of-range overrides', () => {
    assert.throws(() => signatureParams(10, { blockSize: 0 }), SmartcopyError);
    assert.throws(() => signatureParams(10, { strongLength: 9 }), SmartcopyError);
  });
});

describe('delta: round trips', () => {
  before(() => initCodecs());

  it('random basis, random edits, random block size and piece sizes: the new file is rebuilt exactly', async () => {
    await fc.assert(
      fc.asyncProperty(
        bytesArb(3000),
        fc.array(editArb, { maxLength: 5 }),
        fc.integer({ min: 1, max: 96 }),
        piecesArb,
        piecesArb,
        fc.integer({ min: 1, max: 500 }),
        async (basis, edits, blockSize, basisPieces, targetPieces, maxLiteralBytes) => {
          const target = applyEdits(basis, edits);
          const r = await roundTrip(basis, target, { blockSize, basisPieces, targetPieces, maxLiteralBytes, maxOps: 7 });
          assert.ok(r.out.equals(target));
          assert.equal(r.stats.literalBytes + r.stats.copyBytes, target.length);
          for (const b of r.batches) {
            assert.ok(b.literals.length <= maxLiteralBytes);
            assert.ok(b.ops.length <= 7);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a literal that starts a new batch (op limit reached) travels with that batch', async () => {
    // found by the property above (seed -964617092): the bytes went into the closed batch's buffer
    const basis = Uint8Array.from([0, 0, 1, 0]);
    const target = applyEdits(basis, [
      { t: 'insert', at: 0, data: Uint8Array.from([0]) },
      { t: 'insert', at: 998933905, data: Uint8Array.from([2]) },
      { t: 'overwrite', at: 245993865, data: Uint8Array.from([1, 1, 2]) },
    ]);
    for (const maxOps of [1, 2, 3, 7]) {
      const r = await roundTrip(basis, target, { blockSize: 1, basisPieces: [], targetPieces: [], maxLiteralBytes: 2, maxOps });
      assert.ok(r.out.equals(target), `maxOps ${maxOps}`);
      for (const b of r.batches) assert.ok(b.ops.length <= maxOps);
    }
  });

  it('rebuilds with the default block size too (edits within a few blocks)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 20_000 }), fc.array(editArb, { maxLength: 4 }), piecesArb, async (n, edits, targetPieces) => {
        const basis = rand(n);
        const target = applyEdits(basis, edits);
        const r = await roundTrip(basis, target, { targetPieces });
        assert.ok(r.out.equals(target));
      }),
      { numRuns: 40 },
    );
  });

  it('empty basis and/or empty new file', async () => {
    for (const [b, t] of [
      [0, 0],
      [0, 5000],
      [5000, 0],
    ] as const) {
      const r = await roundTrip(rand(b), rand(t));
      assert.equal(r.out.length, t);
      assert.equal(r.stats.literalBytes, t);
    }
    const e = await roundTrip(Buffer.alloc(0), Buffer.alloc(0));
    assert.equal(e.sig.blockCount, 0);
    assert.equal(e.batches.length, 0);
  });

  it('files shorter than one block: identical ones are one copy of the short block', async () => {
    const basis = rand(300);
    const same = await roundTrip(basis, basis, { blockSize: 700, targetPieces: [1, 2, 3] });
    assert.equal(same.stats.literalBytes, 0);
    assert.deepEqual(same.batches.flatMap((b) => b.ops), [{ kind: DeltaOpKind.COPY, basisOffset: 0, length: 300 }]);
    const other = await roundTrip(basis, basis.subarray(1), { blockSize: 700 });
    assert.equal(other.stats.literalBytes, 299);
  });

  it('identical files are all copies, coalesced into one op, the short last block included', async () => {
    const basis = rand(100_000 + 123);
    const r = await roundTrip(basis, basis, { targetPieces: [4096, 77, 65536] });
    assert.equal(r.stats.literalBytes, 0);
    assert.deepEqual(r.batches.flatMap((b) => b.ops), [{ kind: DeltaOpKind.COPY, basisOffset: 0, length: basis.length }]);
  });

  it('completely different files are all literals', async () => {
    const r = await roundTrip(rand(200_000), rand(150_000));
    assert.equal(r.stats.literalBytes, 150_000);
    assert.equal(r.stats.copyBytes, 0);
  });

  it('the last partial block matches only at the end of the new file', async () => {
    const basis = rand(700 * 5 + 100);
    const tail = basis.subarray(700 * 5);
    const r = await roundTrip(basis, Buffer.concat([rand(50), tail]), { blockSize: 700 });
    assert.equal(r.stats.literalBytes, 50);
    const mid = await roundTrip(basis, Buffer.concat([tail, rand(50)]), { blockSize: 700 });
    assert.equal(mid.stats.literalBytes, 150);
  });

  it('a block repeated thousands of times finishes quickly (chain cap) and still copies', async () => {
    const block = rand(700);
    const basis = Buffer.concat(Array.from({ length: 5000 }, () => block));
    const same = await roundTrip(basis, basis, { blockSize: 700 });
    assert.equal(same.stats.literalBytes, 0);
    assert.equal(same.batches.flatMap((b) => b.ops).length, 1, 'the next sequential block is preferred');
    // every window weak-collides with nothing useful: one byte changed in each repeat
    const target = Buffer.from(basis);
    for (let k = 0; k < 5000; k++) target[k * 700 + 350] ^= 0xff;
    const r = await roundTrip(basis, target, { blockSize: 700 });
    assert.equal(r.stats.copyBytes, 0);
    // the new file made of the block (shifted by one byte) repeated: copies from everywhere
    const shifted = await roundTrip(basis, Buffer.concat([Buffer.from([1]), basis, block.subarray(0, 5)]), { blockSize: 700 });
    assert.equal(shifted.stats.literalBytes, 6);
  });

  it('inputBuffer()/commit() (reading straight into the matcher) gives the same ops as update()', async () => {
    const basis = rand(300_000);
    const target = applyEdits(basis, [{ t: 'insert', at: 1000, data: rand(5000) }, { t: 'delete', at: 200_000, len: 3333 }]);
    const sig = computeSignature(basis, SEED);
    const viaUpdate = await roundTrip(basis, target);
    const m = await Matcher.create(sig, { seed: SEED });
    const batches: DeltaBatch[] = [];
    for (const p of pieces(target, [70_000, 1, 4096])) {
      const room = m.inputBuffer();
      assert.ok(room.length >= p.length);
      room.set(p);
      batches.push(...m.commit(p.length));
    }
    const res = m.finish();
    batches.push(...res.batches);
    assert.deepEqual(res.hash, await hashBuffer('xxhash64', target));
    assert.deepEqual(batches.flatMap((b) => b.ops), viaUpdate.batches.flatMap((b) => b.ops));
    assert.ok(applyDelta(basis, batches).equals(target));
  });

  it('all-zero files (the degenerate repeated block)', async () => {
    const basis = Buffer.alloc(3 * MIB);
    const target = Buffer.concat([Buffer.alloc(12345), Buffer.from('x'), Buffer.alloc(2 * MIB)]);
    const r = await roundTrip(basis, target, { targetPieces: [MIB - 3] });
    assert.ok(r.stats.literalBytes < 2 * r.sig.blockSize + 1, `${r.stats.literalBytes}`);
  });
});

describe('delta: literal volume on a 64 MiB file', () => {
  let basis: Buffer;
  let sig: BasisSignature;
  before(async () => {
    await initCodecs();
    basis = rand(64 * MIB);
    const b = new SignatureBuilder(basis.length, SEED);
    sig = new BasisSignature(b.params);
    for (const p of pieces(basis, [MIB])) sig.addSums(b.update(p).takeSums());
    sig.addSums(b.finish());
  });

  async function literalsFor(target: Buffer): Promise<number> {
    const m = new Matcher(sig, { seed: SEED });
    const batches: DeltaBatch[] = [];
    for (const p of pieces(target, [MIB])) batches.push(...m.update(p));
    batches.push(...m.finish().batches);
    assert.ok(applyDelta(basis, batches, { blockSize: sig.blockSize, expectedSize: target.length }).equals(target));
    return literalBytes(batches);
  }

  it('signature size ≈ blockCount × (4 + strongLength)', () => {
    assert.equal(sig.blockSize, 8192);
    assert.equal(sig.blockCount, 8192);
    assert.equal(sig.packSums().length, sig.blockCount * (4 + sig.strongLength));
    assert.ok(sig.strongLength >= 3 && sig.strongLength <= 8);
  });

  it('100 scattered 4 KiB overwrites: ≈ 100 × (4 KiB + up to 2 blocks) of literals', async () => {
    const t = Buffer.from(basis);
    for (let k = 0; k < 100; k++) randomFillSync(t, Math.floor(((k + 0.37) * t.length) / 100), 4096);
    const lit = await literalsFor(t);
    assert.ok(lit >= 100 * 4096 && lit <= 100 * (4096 + 2 * sig.blockSize), `${lit}`);
  });

  it('1 MiB inserted in the middle: ≈ 1 MiB + at most 2 blocks', async () => {
    const t = Buffer.concat([basis.subarray(0, 33 * MIB + 999), rand(MIB), basis.subarray(33 * MIB + 999)]);
    const lit = await literalsFor(t);
    assert.ok(lit >= MIB && lit <= MIB + 2 * sig.blockSize, `${lit}`);
  });

  it('1 MiB deleted: at most 2 blocks', async () => {
    const t = Buffer.concat([basis.subarray(0, 20 * MIB + 5), basis.subarray(21 * MIB + 5)]);
    assert.ok((await literalsFor(t)) <= 2 * sig.blockSize);
  });
});

describe('delta: weak sums', () => {
  before(() => initCodecs());

  it('the signature weak sums equal the JS reference, and the strong sums are seeded xxh64 prefixes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 300 }), (data, blockSize) => {
        const sig = computeSignature(data, SEED, { blockSize });
        for (let b = 0; b < sig.blockCount; b++) {
          const end = Math.min(data.length, (b + 1) * blockSize);
          assert.equal(sig.weak[b], weakSum(data, b * blockSize, end));
          const strong = xxh64(data.subarray(b * blockSize, end), SEED).subarray(0, sig.strongLength);
          assert.deepEqual(Buffer.from(sig.strong.subarray(b * sig.strongLength, (b + 1) * sig.strongLength)), strong);
        }
      }),
    );
  });
});

describe('delta: validation', () => {
  before(() => initCodecs());

  const copy = (basisOffset: number, length: number) => ({ kind: DeltaOpKind.COPY, basisOffset, length });
  const lit = (length: number) => ({ kind: DeltaOpKind.LITERAL, basisOffset: 0, length });
  const bad = (fn: () => unknown, re: RegExp): void => {
    assert.throws(fn, (e: unknown) => e instanceof ProtocolError && e.code === 'SC_ERR_PROTOCOL' && re.test(e.message));
  };

  it('bad ops are ProtocolErrors', () => {
    const limits = { basisSize: 1000, blockSize: 100, expectedSize: 300 };
    bad(() => planPatch([{ ops: [copy(900, 200)], literals: Buffer.alloc(0) }], limits), /outside the 1000 B basis/);
    bad(() => planPatch([{ ops: [copy(50, 100)], literals: Buffer.alloc(0) }], limits), /not whole 100 B blocks/);
    bad(() => planPatch([{ ops: [copy(0, 150)], literals: Buffer.alloc(0) }], limits), /not whole/);
    bad(() => planPatch([{ ops: [lit(10)], literals: Buffer.alloc(5) }], limits), /more than the 5 B/);
    bad(() => planPatch([{ ops: [lit(5)], literals: Buffer.alloc(10) }], limits), /left over/);
    bad(() => planPatch([{ ops: [{ kind: 7, basisOffset: 0, length: 1 }], literals: Buffer.alloc(0) }], limits), /unknown op kind/);
    bad(() => planPatch([{ ops: [copy(0, 0)], literals: Buffer.alloc(0) }], limits), /op length 0/);
    bad(() => planPatch([{ ops: [copy(0, 200), copy(0, 200)], literals: Buffer.alloc(0) }], limits), /more than the 300 B/);
    bad(() => planPatch([{ ops: [copy(0, 200)], literals: Buffer.alloc(0) }], limits), /build 200 B/);
    // the short last block of the basis may be copied as it is
    assert.equal(planPatch([{ ops: [copy(900, 100), copy(0, 100), lit(100)], literals: Buffer.alloc(100) }], limits).length, 3);
    assert.equal(planPatch([{ ops: [copy(950, 50)], literals: Buffer.alloc(0) }], { basisSize: 1000, blockSize: 50 }).length, 1);
  });

  it('the planner coalesces adjacent copies and tracks the output offset across batches', () => {
    const p = new PatchPlanner({ basisSize: 1000 });
    assert.deepEqual(p.plan([copy(0, 100), copy(100, 100)], Buffer.alloc(0)), [{ kind: 'copy', basisOffset: 0, outOffset: 0, length: 200 }]);
    const steps = p.plan([lit(3), copy(0, 10)], Buffer.from('abc'));
    assert.equal(steps[0]!.outOffset, 200);
    assert.equal(steps[1]!.outOffset, 203);
    assert.equal(p.finish(), 213);
  });

  it('bad DeltaOps frames are ProtocolErrors', () => {
    bad(() => readDeltaOpsFrame({ fileId: 1, ops: [lit(4)], compression: 0, rawLength: 5 }, Buffer.alloc(4)), /raw length/);
    bad(() => readDeltaOpsFrame({ fileId: 1, ops: [lit(4)], compression: 0, rawLength: 3 }, Buffer.alloc(3)), /take 4 B/);
  });

  it('bad Signature frames are ProtocolErrors', () => {
    const h = { fileId: 1, blockSize: 100, strongLength: 4, basisSize: 250, blockCount: 2 };
    bad(() => readSignatureFrame(h, Buffer.alloc(15)), /2 blocks announced, 15 B/);
    const sig = readSignatureFrame(h, Buffer.alloc(16));
    assert.equal(sig.complete, false);
    bad(() => readSignatureFrame({ ...h, blockSize: 50 }, Buffer.alloc(8), sig), /continues one/);
    bad(() => readSignatureFrame(h, Buffer.alloc(16), sig), /more than the 3 announced/);
    readSignatureFrame({ ...h, blockCount: 1 }, Buffer.alloc(8), sig);
    assert.equal(sig.complete, true);
    bad(() => readSignatureFrame({ ...h, blockSize: 0 }, Buffer.alloc(0)), /block size 0/);
    bad(() => readSignatureFrame({ ...h, strongLength: 1 }, Buffer.alloc(0)), /strong length 1/);
    bad(() => readSignatureFrame({ ...h, blockSize: 1, basisSize: 2 ** 40 }, Buffer.alloc(0)), /exceed/);
  });

  it('a basis that changes size while summed is an error, and a matcher wants a complete signature', () => {
    const b = new SignatureBuilder(10, SEED);
    assert.throws(() => b.update(Buffer.alloc(11)), (e: unknown) => e instanceof SmartcopyError && e.code === 'SC_ERR_IO');
    const c = new SignatureBuilder(10, SEED).update(Buffer.alloc(5));
    assert.throws(() => c.finish(), (e: unknown) => e instanceof SmartcopyError && e.code === 'SC_ERR_IO');
    const partial = new BasisSignature(signatureParams(1000, { blockSize: 100 }));
    assert.throws(() => new Matcher(partial, { seed: SEED }), SmartcopyError);
  });
});
