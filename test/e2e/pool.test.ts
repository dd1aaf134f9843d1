import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeConnections, connectionStats, copy } from '@smartcopy/client';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { cleanup, pseudoRandom, snapshot, tempDir, writeFile } from '../fixtures/tree.js';

/** A pass-through TCP proxy that counts the connections it accepts. */
async function countingProxy(target: number): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    accepted++;
    const up = net.connect(target, '127.0.0.1');
    for (const s of [c, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('library API: jobs in one process reuse agent connections', () => {
  let src: string;
  let root: string;
  let agent: RunningAgent;
  before(async () => {
    src = tempDir('pool-src');
    root = tempDir('pool-root');
    for (let i = 0; i < 20; i++) writeFile(src, `d${i % 3}/f${i}.bin`, pseudoRandom(50_000 + i, i));
    agent = await startAgent(root);
  });
  after(async () => {
    await closeConnections();
    await agent.stop();
    cleanup(src, root);
  });

  it('a second job to the same agent opens no new connection', async () => {
    const proxy = await countingProxy(agent.port);
    try {
      const first = await copy(src, `127.0.0.1:${proxy.port}:/one`, { streams: 3 });
      assert.equal(first.exitCode, 0, first.errors.map((e) => e.message).join('\n'));
      const afterFirst = proxy.accepted();
      assert.ok(afterFirst >= 1 && afterFirst <= 3, `first job used ${afterFirst} connections`);
      assert.equal(connectionStats(`127.0.0.1:${proxy.port}`).idle, 1, 'the connection waits in the pool');
      const second = await copy(src, `127.0.0.1:${proxy.port}:/two`, { streams: 3 });
      assert.equal(second.exitCode, 0, second.errors.map((e) => e.message).join('\n'));
      assert.equal(proxy.accepted(), afterFirst, 'no new TCP connection for the second job');
      const pulled = tempDir('pool-pull');
      try {
        const third = await copy(`127.0.0.1:${proxy.port}:/two`, pulled, { streams: 3 });
        assert.equal(third.exitCode, 0);
        assert.equal(proxy.accepted(), afterFirst, 'a pull reuses them too');
        assert.deepEqual([...snapshot(pulled).keys()].sort(), [...snapshot(src).keys()].sort());
      } finally {
        cleanup(pulled);
      }
      for (const d of ['one', 'two']) assert.ok(fs.readFileSync(path.join(root, d, 'd1/f1.bin')).equals(fs.readFileSync(path.join(src, 'd1/f1.bin'))));
    } finally {
      await closeConnections();
      await proxy.close();
    }
  });

  it('a failed job does not leave a broken connection in the pool', async () => {
    const bad = await copy(path.join(src, 'missing'), `127.0.0.1:${agent.port}:/x`);
    assert.equal(bad.exitCode, 3);
    const good = await copy(src, `127.0.0.1:${agent.port}:/after-failure`);
    assert.equal(good.exitCode, 0, good.errors.map((e) => e.message).join('\n'));
  });
});
