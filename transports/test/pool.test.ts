import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { ConnectionPool, poolKey } from '../src/index.js';
import type { Connection, Stream } from '../src/index.js';

/** A connection with no I/O: records how it was closed. */
class FakeConnection implements Connection {
  static count = 0;
  readonly features = { sameHost: false, multiplexed: false, encrypted: false };
  readonly remoteAddress: string;
  readonly closed: Promise<void>;
  how: 'open' | 'closed' | 'aborted' = 'open';
  #resolve!: () => void;
  constructor() {
    this.remoteAddress = `fake-${++FakeConnection.count}`;
    this.closed = new Promise((r) => (this.#resolve = r));
  }
  openStream(): Promise<Stream> {
    return Promise.reject(new SmartcopyError('SC_ERR_UNSUPPORTED', 'fake connection has no streams'));
  }
  async close(): Promise<void> {
    if (this.how === 'open') this.how = 'closed';
    this.#resolve();
  }
  abort(): void {
    if (this.how === 'open') this.how = 'aborted';
    this.#resolve();
  }
}

function dialer() {
  const made: FakeConnection[] = [];
  const dial = async (): Promise<Connection> => {
    const c = new FakeConnection();
    made.push(c);
    return c;
  };
  return { made, dial };
}

const K = poolKey('tcp', '10.0.0.5:9878');
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ConnectionPool', () => {
  it('builds distinct keys per transport, address and user', () => {
    assert.equal(poolKey('ssh', 'h:22', 'bob'), 'ssh://bob@h:22');
    assert.notEqual(poolKey('ssh', 'h:22', 'bob'), poolKey('ssh', 'h:22', 'amy'));
    assert.notEqual(poolKey('tcp', 'h:22'), poolKey('ssh', 'h:22'));
  });

  it('reuses an idle connection instead of dialing again', async () => {
    const pool = new ConnectionPool();
    const { made, dial } = dialer();
    const a = await pool.acquire(K, dial);
    a.release();
    const b = await pool.acquire(K, dial);
    assert.equal(b.conn, a.conn);
    assert.equal(made.length, 1);
    b.release();
    await pool.closeAll();
    assert.equal(made[0]!.how, 'closed');
  });

  it('grows up to maxPerKey, then queues FIFO; release hands the connection to the oldest waiter', async () => {
    const pool = new ConnectionPool({ maxPerKey: 2 });
    const { made, dial } = dialer();
    const a = await pool.acquire(K, dial);
    const b = await pool.acquire(K, dial);
    assert.notEqual(a.conn, b.conn);
    const order: string[] = [];
    const c = pool.acquire(K, dial).then((l) => (order.push('c'), l));
    const d = pool.acquire(K, dial).then((l) => (order.push('d'), l));
    await tick();
    assert.deepEqual(pool.stats(K), { connections: 2, idle: 0, dialing: 0, waiting: 2 });
    b.release();
    const lc = await c;
    assert.equal(lc.conn, b.conn);
    a.release();
    const ld = await d;
    assert.equal(ld.conn, a.conn);
    assert.deepEqual(order, ['c', 'd']);
    assert.equal(made.length, 2);
    lc.release();
    ld.release();
    await pool.closeAll();
  });

  it('rejects with SC_ERR_BUSY when the wait queue is full', async () => {
    const pool = new ConnectionPool({ maxPerKey: 1, maxQueue: 1 });
    const { dial } = dialer();
    const a = await pool.acquire(K, dial);
    const waiting = pool.acquire(K, dial);
    await assert.rejects(pool.acquire(K, dial), (e: unknown) => {
      assert.ok(e instanceof SmartcopyError);
      assert.equal(e.code, 'SC_ERR_BUSY');
      assert.equal(e.retryable, true);
      return true;
    });
    a.release();
    (await waiting).release();
    await pool.closeAll();
  });

  it('a waiter whose signal aborts leaves the queue', async () => {
    const pool = new ConnectionPool({ maxPerKey: 1 });
    const { dial } = dialer();
    const a = await pool.acquire(K, dial);
    const ac = new AbortController();
    const waiting = pool.acquire(K, dial, { signal: ac.signal });
    ac.abort();
    await assert.rejects(waiting, { code: 'SC_ERR_ABORTED' });
    assert.equal(pool.stats(K).waiting, 0);
    a.release();
    await pool.closeAll();
  });

  it('release(false) retires the connection; the next acquire dials a new one', async () => {
    const pool = new ConnectionPool({ maxPerKey: 1 });
    const { made, dial } = dialer();
    const waitingFor = await pool.acquire(K, dial);
    const next = pool.acquire(K, dial);
    waitingFor.release(false);
    waitingFor.release(true); // a second release is ignored
    const l = await next;
    assert.notEqual(l.conn, waitingFor.conn);
    assert.equal(made[0]!.how, 'aborted');
    assert.equal(made.length, 2);
    l.release();
    await pool.closeAll();
  });

  it('forgets a connection that closes by itself', async () => {
    const pool = new ConnectionPool();
    const { made, dial } = dialer();
    const a = await pool.acquire(K, dial);
    a.release();
    made[0]!.abort();
    await tick();
    assert.equal(pool.stats(K).connections, 0);
    const b = await pool.acquire(K, dial);
    assert.notEqual(b.conn, a.conn);
    b.release();
    await pool.closeAll();
  });

  it('closes connections idle longer than idleTimeoutMs', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 5 });
    const { made, dial } = dialer();
    (await pool.acquire(K, dial)).release();
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(made[0]!.how, 'closed');
    assert.equal(pool.stats(K).connections, 0);
    await pool.closeAll();
  });

  it('a failed dial rejects that caller and lets the next waiter dial', async () => {
    const pool = new ConnectionPool({ maxPerKey: 1 });
    let fail = true;
    const refused = new SmartcopyError('SC_ERR_CONNECT', 'cannot connect');
    const dial = async (): Promise<Connection> => {
      await tick();
      if (fail) {
        fail = false;
        throw refused;
      }
      return new FakeConnection();
    };
    const first = pool.acquire(K, dial);
    const second = pool.acquire(K, dial);
    await assert.rejects(first, (e) => e === refused);
    const l = await second;
    assert.ok(l.conn instanceof FakeConnection);
    l.release();
    await pool.closeAll();
  });

  it('shares a connection between up to maxLeasesPerConnection holders', async () => {
    const pool = new ConnectionPool({ maxPerKey: 2, maxLeasesPerConnection: 3 });
    const { made, dial } = dialer();
    const leases = await Promise.all(Array.from({ length: 6 }, () => pool.acquire(K, dial)));
    assert.equal(made.length, 2);
    assert.equal(leases.filter((l) => l.conn === made[0]).length, 3);
    for (const l of leases) l.release();
    assert.equal(pool.stats(K).idle, 2);
    await pool.closeAll({ force: true });
    assert.deepEqual(made.map((c) => c.how), ['aborted', 'aborted']);
  });

  it('closeAll() fails waiters and refuses new acquires', async () => {
    const pool = new ConnectionPool({ maxPerKey: 1 });
    const { dial } = dialer();
    const a = await pool.acquire(K, dial);
    const waiting = pool.acquire(K, dial);
    await pool.closeAll();
    await assert.rejects(waiting, (e: unknown) => e instanceof ConnectionClosedError);
    await assert.rejects(pool.acquire(K, dial), (e: unknown) => e instanceof ConnectionClosedError);
    a.release();
  });

  it('validates its options', () => {
    assert.throws(() => new ConnectionPool({ maxPerKey: 0 }), { code: 'SC_ERR_USAGE' });
  });
});
