/**
 * Throughput of one WebTransport stream on loopback, each way. A measurement, not a check: it
 * runs only with SMARTCOPY_BENCH=1 and prints MiB/s (the machine is shared and noisy, so no
 * figure is asserted). SMARTCOPY_BENCH_MIB sets the bytes moved per direction (default 512).
 *
 *   SMARTCOPY_BENCH=1 node --test transports/dist/test/webtransport-bench.test.js
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { generateWebTransportCertificate, webTransportTransport } from '../src/index.js';
import type { Stream } from '../src/index.js';
import { randomBytes, sink } from './compliance.js';

const MiB = 1024 * 1024;
const enabled = process.env.SMARTCOPY_BENCH === '1';
const total = Number(process.env.SMARTCOPY_BENCH_MIB ?? 512) * MiB;

async function pump(from: Stream, to: Stream, block: Buffer): Promise<number> {
  const got = sink(to);
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += block.length) if (!from.write(block)) await from.drain();
  await from.end();
  const r = await got.result;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(r.bytes, total);
  return total / MiB / seconds;
}

it('webtransport: one stream, MiB/s each way', { skip: enabled ? false : 'set SMARTCOPY_BENCH=1 to measure', timeout: 300_000 }, async () => {
  const id = await generateWebTransportCertificate();
  const t = webTransportTransport({ certPem: id.certPem, keyPem: id.keyPem, serverCertificateHashes: [id.fingerprint] });
  const accepted: Stream[] = [];
  const l = await t.listen({ host: '127.0.0.1', port: 0 }, (s) => accepted.push(s));
  const conn = await t.dial(l.address);
  try {
    const block = randomBytes(MiB);
    for (let round = 0; round < 2; round++) {
      const c = await conn.openStream();
      while (accepted.length === 0) await new Promise((r) => setImmediate(r));
      const s = accepted.shift()!;
      const up = await pump(c, s, block);
      const down = await pump(s, c, block);
      console.log(`webtransport ${conn.http} round ${round + 1}: upload ${up.toFixed(0)} MiB/s, download ${down.toFixed(0)} MiB/s (${total / MiB} MiB, 1 MiB writes)`);
      await Promise.all([c.closed, s.closed]);
    }
  } finally {
    await conn.close();
    await l.close({ abortStreams: true });
  }
});
