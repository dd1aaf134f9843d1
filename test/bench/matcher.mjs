#!/usr/bin/env node
// Micro-benchmark of the delta engine's CPU cost (one core): signature building and matching
// over random data, fed in 1 MiB pieces as a file reader would; best of --runs. Usage:
//   node test/bench/matcher.mjs [--mib 256] [--runs 3]
// Prints MiB/s per stage; compare runs on one machine only (this one is noisy).
import { randomFillSync } from 'node:crypto';
import {
  BasisSignature, Matcher, SignatureBuilder, applyDelta, initCodecs,
} from '@smartcopy/protocol';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const MIB = 1024 * 1024;
const size = arg('mib', 256) * MIB;
const runs = arg('runs', 3);
const PIECE = MIB;
const SEED = 0x5eedn;

await initCodecs();
const basis = Buffer.allocUnsafe(size);
randomFillSync(basis);

function edited(kind) {
  if (kind === 'identical') return basis;
  if (kind === 'unrelated') return randomFillSync(Buffer.allocUnsafe(size));
  if (kind === '100 x 4 KiB overwrites') {
    const b = Buffer.from(basis);
    for (let k = 0; k < 100; k++) randomFillSync(b, Math.floor(((k + 0.5) * size) / 100), 4096);
    return b;
  }
  if (kind === '1 MiB inserted') {
    return Buffer.concat([basis.subarray(0, size / 2), randomFillSync(Buffer.alloc(MIB)), basis.subarray(size / 2)]);
  }
  throw new Error(kind);
}

function best(fn) {
  let t = Infinity;
  let r;
  for (let k = 0; k < runs; k++) {
    const t0 = process.hrtime.bigint();
    r = fn();
    t = Math.min(t, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { t, r };
}

const sigRun = best(() => {
  const b = new SignatureBuilder(size, SEED);
  const sig = new BasisSignature(b.params);
  for (let at = 0; at < size; at += PIECE) {
    b.update(basis.subarray(at, at + PIECE));
    sig.addSums(b.takeSums());
  }
  sig.addSums(b.finish());
  return sig;
});
const sig = sigRun.r;
console.log(`basis ${size / MIB} MiB, block ${sig.blockSize} B, ${sig.blockCount} blocks, strong ${sig.strongLength} B, signature ${(sig.blockCount * (4 + sig.strongLength) / 1024).toFixed(0)} KiB`);
console.log(`signature build            ${(size / MIB / sigRun.t).toFixed(0).padStart(6)} MiB/s`);

const kinds = ['unrelated', 'unrelated (commit)', 'identical', '100 x 4 KiB overwrites', '1 MiB inserted'];
for (const kind of kinds) {
  const data = edited(kind.replace(' (commit)', ''));
  // "(commit)": the reader fills matcher.inputBuffer() itself (here a copy stands in for the read)
  const viaCommit = kind.endsWith('(commit)');
  // Timed runs drop each batch once counted, as the match worker does once it has posted it;
  // holding 256 MiB of literals would time the page faults of a growing heap instead.
  // One more run, untimed, keeps them to check the reconstruction.
  const match = (keep) => {
    const m = new Matcher(sig, { seed: SEED });
    const kept = [];
    let ops = 0;
    const take = (bs) => {
      for (const b of bs) {
        ops += b.ops.length;
        if (keep) kept.push(b);
      }
    };
    for (let at = 0; at < data.length; at += PIECE) {
      const piece = data.subarray(at, at + PIECE);
      if (viaCommit) {
        m.inputBuffer().set(piece);
        take(m.commit(piece.length));
      } else {
        take(m.update(piece));
      }
    }
    const res = m.finish();
    take(res.batches);
    return { batches: kept, ops, stats: res.stats };
  };
  const run = best(() => match(false));
  const { stats, ops } = run.r;
  const ok = applyDelta(basis, match(true).batches).equals(data);
  console.log(
    `match ${kind.padEnd(22)} ${(data.length / MIB / run.t).toFixed(0).padStart(6)} MiB/s   literals ${(stats.literalBytes / 1024).toFixed(0)} KiB, ` +
      `${ops} ops${ok ? '' : '   RECONSTRUCTION MISMATCH'}`,
  );
  if (!ok) process.exitCode = 1;
}
