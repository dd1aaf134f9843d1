#!/usr/bin/env node
// Throughput of the QUIC transport alone (no smartcopy protocol, no files): one connection,
// one stream, SIZE bytes from a client to a listener over loopback, once per datagram size.
// The listener runs in a child process, as an agent would, so each end has its own event loop
// (and, on this 2-core machine, its own core). Needs `npx tsc -b transports` first.
//
//   node test/bench/quic-raw.mjs [--size MiB] [--payload 1452,16383] [--runs N] [--retry] [--pull] [--cc cubic|reno|bbr] [--same-process]
//
// Prints one line per payload size: MiB/s (median of the runs, timed from the first write to
// the receiver's end-of-stream), CPU seconds per GiB of each end, packets sent and lost.
// --pull sends from the listener to the client instead (a pull from an agent).
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { certificateFingerprint, pinFingerprint, quicTransport } from '../../transports/dist/src/quic/index.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1024' },
    payload: { type: 'string', default: '1452,16383' },
    runs: { type: 'string', default: '1' },
    chunk: { type: 'string', default: '1024' },
    retry: { type: 'boolean', default: false },
    pull: { type: 'boolean', default: false },
    cc: { type: 'string', default: 'cubic' },
    'same-process': { type: 'boolean', default: false },
    serve: { type: 'boolean', default: false },
    'make-identity': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: node test/bench/quic-raw.mjs [--size MiB=1024] [--payload 1452,16383] [--runs 1] [--chunk KiB=1024] [--retry] [--pull] [--cc cubic|reno|bbr] [--same-process]\n',
  );
  process.exit(0);
}
const MiB = 1024 * 1024;

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * The listener: counts what each stream delivers and reports its end (and this end's CPU time
 * since the stream opened) through `report`.
 */
/**
 * A throwaway identity, made in a short-lived child: loading the certificate generator into
 * either end would enlarge its heap, and a bigger heap makes V8 collect far more often under
 * the buffer churn of a transfer (seen here: receiver CPU up to 2x), which is not QUIC's cost.
 */
function identity() {
  const child = fork(new URL(import.meta.url).pathname, ['--make-identity'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => code !== 0 && reject(new Error(`identity generator exited with ${code}`)));
  });
}

async function serve({ certPem, keyPem, payload, retry, pull, size, chunkBytes, cc }, report) {
  const transport = quicTransport({ certPem, keyPem, maxPayload: payload, retry, congestionControl: cc });
  const listener = await transport.listen({ host: '127.0.0.1', port: 0 }, (s) => {
    let received = 0;
    const cpu0 = cpuSeconds();
    s.setReader({
      data(c) {
        received += c.byteLength;
      },
      end() {
        if (!pull) report({ type: 'end', received, cpu: cpuSeconds() - cpu0 });
        void s.end();
      },
      error: (e) => report({ type: 'error', message: e.message }),
    });
    if (pull) {
      void writeAll(s, size, chunkBytes).then(
        () => report({ type: 'sent', cpu: cpuSeconds() - cpu0 }),
        (e) => report({ type: 'error', message: e.message }),
      );
    }
  });
  return listener;
}

/** `size` bytes from one reused buffer: quiche copies what it takes, and drain() waits for that */
async function writeAll(stream, size, chunkBytes) {
  const chunk = Buffer.alloc(chunkBytes, 0x5a);
  for (let sent = 0; sent < size; sent += chunk.byteLength) {
    if (!stream.write(chunk.subarray(0, Math.min(chunk.byteLength, size - sent)))) await stream.drain();
  }
  await stream.end();
}

if (values['make-identity']) {
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'quic-raw bench' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  process.send({ certPem: pems.cert, keyPem: pems.private }, () => process.exit(0));
} else if (values.serve) {
  // child mode: one listener, driven by the parent over IPC; it ends with its parent
  process.on('disconnect', () => process.exit(0));
  let listener;
  process.on('message', async (m) => {
    if (m.type === 'listen') {
      listener = await serve(m, (r) => process.send(r));
      process.send({ type: 'listening', address: listener.address });
    } else if (m.type === 'stop') {
      await listener?.close({ abortStreams: true });
      process.disconnect();
    }
  });
} else {
  await main();
}

async function main() {
  const size = Number(values.size) * MiB;
  const chunkBytes = Number(values.chunk) * 1024;
  const payloads = values.payload.split(',').map(Number);
  const runs = Number(values.runs);
  const { certPem, keyPem } = await identity();
  const fingerprint = certificateFingerprint(certPem);
  const where = values['same-process'] ? 'in this process' : 'in a child process';
  const direction = values.pull ? 'listener → client' : 'client → listener';
  console.log(`QUIC raw transport: one stream, ${size / MiB} MiB ${direction} (listener ${where}) over 127.0.0.1, ${runs} run(s) per size`);

  for (const payload of payloads) {
    const serverInit = { certPem, keyPem, payload, retry: values.retry, pull: values.pull, size, chunkBytes, cc: values.cc };
    // events from the listener, wherever it runs
    let onReport = () => {};
    let child;
    let address;
    let localListener;
    if (values['same-process']) {
      localListener = await serve(serverInit, (r) => onReport(r));
      address = localListener.address;
    } else {
      child = fork(new URL(import.meta.url).pathname, ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m) => onReport(m));
      address = await new Promise((resolve) => {
        onReport = (m) => m.type === 'listening' && resolve(m.address);
        child.send({ type: 'listen', ...serverInit });
      });
    }
    const transport = quicTransport({ verifyPeer: pinFingerprint(fingerprint), maxPayload: payload, congestionControl: values.cc });
    const results = [];
    for (let i = 0; i < runs; i++) {
      const conn = await transport.dial(address);
      let pulled = 0;
      let pullEnd;
      const pullDone = new Promise((resolve) => (pullEnd = resolve));
      const reported = new Promise((resolve, reject) => {
        onReport = (m) => (m.type === 'end' || m.type === 'sent' ? resolve(m) : m.type === 'error' && reject(new Error(m.message)));
      });
      const cpu0 = cpuSeconds();
      const t0 = performance.now();
      const stream = await conn.openStream();
      stream.setReader({
        data(c) {
          pulled += c.byteLength;
        },
        end: () => pullEnd(performance.now()),
        error() {},
      });
      let end;
      if (values.pull) {
        const at = await pullDone;
        end = { ...(await reported), at, received: pulled };
        await stream.end();
      } else {
        await writeAll(stream, size, chunkBytes);
        end = await reported;
        end.at = performance.now();
      }
      const clientCpu = cpuSeconds() - cpu0;
      const stats = conn.stats();
      await stream.closed;
      await conn.close();
      if (end.received !== size) throw new Error(`the receiver got ${end.received} of ${size} bytes`);
      const gib = size / (1024 * MiB);
      results.push({ mibps: size / MiB / ((end.at - t0) / 1000), clientCpu: clientCpu / gib, serverCpu: end.cpu / gib, stats });
    }
    if (child) {
      child.send({ type: 'stop' });
      await new Promise((r) => child.once('exit', r));
    } else await localListener.close();
    results.sort((a, b) => a.mibps - b.mibps);
    const med = results[Math.floor(results.length / 2)];
    const s = med.stats;
    const cpu = values['same-process'] ? `cpu ${med.clientCpu.toFixed(1)} s/GiB (both ends)` : `cpu s/GiB client ${med.clientCpu.toFixed(1)}, listener ${med.serverCpu.toFixed(1)}`;
    console.log(
      `payload ${String(payload).padStart(5)} B (datagrams ${s.maxDatagramSize} B): ${med.mibps.toFixed(0).padStart(4)} MiB/s` +
        `  [runs: ${results.map((r) => r.mibps.toFixed(0)).join(', ')}]  ${cpu}  ` +
        (values.pull ? `packets received ${s.packetsReceived}` : `packets sent ${s.packetsSent}, lost ${s.packetsLost}`),
    );
  }
}
