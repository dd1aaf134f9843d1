/**
 * Throughput of one WebTransport stream on loopback, each way, with the agent end and the
 * client end in two separate processes (plain `node`, outside the test runner, whose async
 * hooks would cost a large part of the CPU). A measurement, not a check, so it is not part of
 * `npm test` (its name does not end in .test): run it by hand; it prints MiB/s and asserts no
 * figure. SMARTCOPY_BENCH_MIB sets the bytes moved per direction and round (default 1024).
 *
 *   SMARTCOPY_BENCH=1 node --test transports/dist/test/webtransport-throughput.js
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { generateWebTransportCertificate } from '../src/index.js';

const enabled = process.env.SMARTCOPY_BENCH === '1';
const mib = Number(process.env.SMARTCOPY_BENCH_MIB ?? 1024);
const index = JSON.stringify(new URL('../src/index.js', import.meta.url).href);

/** The agent end: a stream that starts with 'U' is drained, one with 'D' + u32 MiB gets that many MiB. */
const SERVER = `
import { webTransportTransport } from ${index};
const { certPem, keyPem } = JSON.parse(process.argv[2]);
const l = await webTransportTransport({ certPem, keyPem }).listen({ host: '127.0.0.1', port: 0 }, (s) => {
  let mode;
  s.setReader({
    data(c) {
      if (mode !== undefined) return;
      mode = String.fromCharCode(c[0]);
      if (mode !== 'D') return;
      const n = c.readUInt32BE(1);
      const block = Buffer.alloc(1 << 20, 9);
      (async () => {
        for (let i = 0; i < n; i++) if (!s.write(block)) await s.drain();
        await s.end();
      })().catch(() => s.abort());
    },
    end() {
      if (mode === 'U') s.end().catch(() => undefined);
    },
    error() {},
  });
});
process.send(l.address);
`;

/** The client end: upload, then download, `mib` MiB each, with 1 MiB writes; prints JSON lines. */
const CLIENT = `
import { webTransportTransport } from ${index};
const [address, fingerprint, mib] = process.argv.slice(2);
const total = Number(mib);
const conn = await webTransportTransport({ serverCertificateHashes: [fingerprint] }).dial(address);
const block = Buffer.alloc(1 << 20, 7);
const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;
for (let round = 1; round <= 3; round++) {
  let s = await conn.openStream();
  let ended = new Promise((res, rej) => s.setReader({ data() {}, end: res, error: rej }));
  let t0 = process.hrtime.bigint();
  s.write(Buffer.from('U'));
  for (let i = 0; i < total; i++) if (!s.write(block)) await s.drain();
  await s.end();
  await ended;
  const up = total / seconds(t0);
  s = await conn.openStream();
  let got = 0;
  ended = new Promise((res, rej) => s.setReader({ data: (c) => void (got += c.length), end: res, error: rej }));
  t0 = process.hrtime.bigint();
  const head = Buffer.alloc(5);
  head[0] = 0x44;
  head.writeUInt32BE(total, 1);
  s.write(head);
  await s.end();
  await ended;
  const down = total / seconds(t0);
  if (got !== total * 1048576) throw new Error('short download: ' + got);
  console.log(JSON.stringify({ round, http: conn.http, up, down }));
}
await conn.close();
`;

it('webtransport: one stream, MiB/s each way, two processes', { skip: enabled ? false : 'set SMARTCOPY_BENCH=1 to measure', timeout: 600_000 }, async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sc-wt-bench-'));
  const id = await generateWebTransportCertificate();
  try {
    await fs.writeFile(path.join(dir, 'server.mjs'), SERVER);
    await fs.writeFile(path.join(dir, 'client.mjs'), CLIENT);
    const server = fork(path.join(dir, 'server.mjs'), [JSON.stringify({ certPem: id.certPem, keyPem: id.keyPem })], { execArgv: [] });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        server.once('message', (m) => resolve(String(m)));
        server.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
      });
      const client = fork(path.join(dir, 'client.mjs'), [address, id.fingerprint, String(mib)], { execArgv: [], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
      let out = '';
      client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((r) => client.once('exit', r));
      assert.equal(code, 0, 'the bench client failed');
      for (const line of out.trim().split('\n')) {
        const r = JSON.parse(line) as { round: number; http: string; up: number; down: number };
        console.log(`webtransport ${r.http}, one stream, round ${r.round}: upload ${r.up.toFixed(0)} MiB/s, download ${r.down.toFixed(0)} MiB/s (${mib} MiB, 1 MiB writes)`);
      }
    } finally {
      server.kill();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
