import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { abortReason } from '../abstract-connection.js';
import type { Connection } from '../types.js';

/** Connections kept per key (transport, address, user) unless configured otherwise. */
export const POOL_MAX_PER_KEY = 4;
/** An idle pooled connection is closed after this long. */
export const POOL_IDLE_TIMEOUT_MS = 60_000;
/** Callers allowed to wait per key for a connection before acquire() fails with SC_ERR_BUSY. */
export const POOL_MAX_QUEUE = 1024;

export interface ConnectionPoolOptions {
  maxPerKey?: number;
  idleTimeoutMs?: number;
  maxQueue?: number;
  /**
   * How many holders may lease one connection at once. 1 (the default) gives exclusive leases;
   * a multiplexed transport (SSH, QUIC) can share one connection between several jobs.
   */
  maxLeasesPerConnection?: number;
}

export interface PoolLease {
  readonly conn: Connection;
  /** give the connection back; `reusable: false` retires it (it is aborted once unused) */
  release(reusable?: boolean): void;
}

export type Dialer = (signal?: AbortSignal) => Promise<Connection>;

/** The pool key of a peer: one pool slot set per transport kind, address and user. */
export function poolKey(kind: string, address: string, user?: string): string {
  return `${kind}://${user === undefined ? '' : `${user}@`}${address}`;
}

interface Entry {
  readonly conn: Connection;
  leases: number;
  retired: boolean;
  idleTimer: NodeJS.Timeout | undefined;
}

interface Waiter {
  readonly dial: Dialer;
  readonly signal: AbortSignal | undefined;
  resolve(lease: PoolLease): void;
  reject(err: Error): void;
  cleanup(): void;
}

interface Bucket {
  readonly entries: Entry[];
  dialing: number;
  waiters: Waiter[];
}

export interface PoolStats {
  connections: number;
  idle: number;
  dialing: number;
  waiting: number;
}

/**
 * Keeps connections per key: hands out an idle (or not fully leased) connection first, dials
 * a new one while below `maxPerKey`, and otherwise queues the caller in a bounded FIFO.
 */
export class ConnectionPool {
  readonly #maxPerKey: number;
  readonly #idleTimeoutMs: number;
  readonly #maxQueue: number;
  readonly #maxLeases: number;
  readonly #buckets = new Map<string, Bucket>();
  #closed = false;

  constructor(opts: ConnectionPoolOptions = {}) {
    this.#maxPerKey = opts.maxPerKey ?? POOL_MAX_PER_KEY;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? POOL_IDLE_TIMEOUT_MS;
    this.#maxQueue = opts.maxQueue ?? POOL_MAX_QUEUE;
    this.#maxLeases = opts.maxLeasesPerConnection ?? 1;
    for (const [name, v] of [['maxPerKey', this.#maxPerKey], ['maxLeasesPerConnection', this.#maxLeases]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SmartcopyError('SC_ERR_USAGE', `connection pool: ${name} must be an integer ≥ 1, got ${v}`);
    }
    if (!(this.#idleTimeoutMs >= 0)) throw new SmartcopyError('SC_ERR_USAGE', `connection pool: idleTimeoutMs must be ≥ 0`);
    if (!Number.isInteger(this.#maxQueue) || this.#maxQueue < 0) {
      throw new SmartcopyError('SC_ERR_USAGE', `connection pool: maxQueue must be an integer ≥ 0`);
    }
  }

  acquire(key: string, dial: Dialer, opts: { signal?: AbortSignal } = {}): Promise<PoolLease> {
    const { signal } = opts;
    if (this.#closed) return Promise.reject(new ConnectionClosedError('the connection pool is closed'));
    if (signal?.aborted) return Promise.reject(abortReason(signal, `wait for a connection to ${key}`));
    const bucket = this.#bucket(key);
    const entry = this.#pick(bucket);
    if (entry !== undefined) return Promise.resolve(this.#lease(key, entry));
    if (bucket.entries.length + bucket.dialing < this.#maxPerKey) return this.#dialNew(key, bucket, dial, signal);
    if (bucket.waiters.length >= this.#maxQueue) {
      return Promise.reject(
        new SmartcopyError(
          'SC_ERR_BUSY',
          `too many jobs waiting for a connection to ${key}: ${this.#maxPerKey} connections busy and ${bucket.waiters.length} waiting`,
          { retryable: true },
        ),
      );
    }
    return new Promise<PoolLease>((resolve, reject) => {
      const onAbort = (): void => {
        bucket.waiters = bucket.waiters.filter((w) => w !== waiter);
        reject(abortReason(signal!, `wait for a connection to ${key}`));
        this.#dropIfEmpty(key, bucket);
      };
      const waiter: Waiter = {
        dial,
        signal,
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      bucket.waiters.push(waiter);
    });
  }

  stats(key: string): PoolStats {
    const b = this.#buckets.get(key);
    if (b === undefined) return { connections: 0, idle: 0, dialing: 0, waiting: 0 };
    return {
      connections: b.entries.length,
      idle: b.entries.filter((e) => e.leases === 0).length,
      dialing: b.dialing,
      waiting: b.waiters.length,
    };
  }

  /** Fail every waiter and close every connection (abort them with `force`). */
  async closeAll(opts: { force?: boolean } = {}): Promise<void> {
    this.#closed = true;
    const closing: Promise<void>[] = [];
    for (const bucket of this.#buckets.values()) {
      for (const w of bucket.waiters) {
        w.cleanup();
        w.reject(new ConnectionClosedError('the connection pool was closed'));
      }
      bucket.waiters = [];
      for (const e of bucket.entries) {
        clearTimeout(e.idleTimer);
        if (opts.force) e.conn.abort();
        else closing.push(e.conn.close().catch(() => e.conn.abort()));
      }
      bucket.entries.length = 0;
    }
    this.#buckets.clear();
    await Promise.all(closing);
  }

  #bucket(key: string): Bucket {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      b = { entries: [], dialing: 0, waiters: [] };
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** prefer the least-leased live connection: spreads load over a multiplexed pool */
  #pick(bucket: Bucket): Entry | undefined {
    let best: Entry | undefined;
    for (const e of bucket.entries) {
      if (e.retired || e.leases >= this.#maxLeases) continue;
      if (best === undefined || e.leases < best.leases) best = e;
    }
    return best;
  }

  #lease(key: string, entry: Entry): PoolLease {
    entry.leases++;
    clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
    let released = false;
    return {
      conn: entry.conn,
      release: (reusable = true) => {
        if (released) return;
        released = true;
        this.#release(key, entry, reusable);
      },
    };
  }

  async #dialNew(key: string, bucket: Bucket, dial: Dialer, signal: AbortSignal | undefined): Promise<PoolLease> {
    bucket.dialing++;
    let conn: Connection;
    try {
      conn = await dial(signal);
    } catch (err) {
      bucket.dialing--;
      this.#service(key, bucket);
      throw err;
    }
    bucket.dialing--;
    if (this.#closed) {
      conn.abort();
      throw new ConnectionClosedError('the connection pool was closed');
    }
    const entry: Entry = { conn, leases: 0, retired: false, idleTimer: undefined };
    bucket.entries.push(entry);
    void conn.closed.then(() => this.#remove(key, entry));
    if (signal?.aborted) {
      // the caller gave up, but the connection is good: keep it for the next one
      this.#service(key, bucket);
      if (entry.leases === 0) this.#idle(key, entry);
      throw abortReason(signal, `wait for a connection to ${key}`);
    }
    const lease = this.#lease(key, entry);
    // a shareable connection may serve waiters that queued while it was being dialed
    this.#service(key, bucket);
    return lease;
  }

  #release(key: string, entry: Entry, reusable: boolean): void {
    entry.leases--;
    if (!reusable) entry.retired = true;
    const bucket = this.#buckets.get(key);
    if (bucket === undefined || !bucket.entries.includes(entry)) return;
    if (entry.retired) {
      if (entry.leases === 0) {
        this.#remove(key, entry);
        entry.conn.abort(new ConnectionClosedError(`pooled connection to ${key} retired`));
      }
      this.#service(key, bucket);
      return;
    }
    this.#service(key, bucket);
    if (entry.leases === 0) this.#idle(key, entry);
  }

  #idle(key: string, entry: Entry): void {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      entry.idleTimer = undefined;
      if (entry.leases > 0) return;
      this.#remove(key, entry);
      entry.conn.close().catch(() => entry.conn.abort());
    }, this.#idleTimeoutMs);
    // an idle pool must never keep the process alive
    entry.idleTimer.unref();
  }

  /** Hand freed capacity to waiters, oldest first. */
  #service(key: string, bucket: Bucket): void {
    while (bucket.waiters.length > 0) {
      const entry = this.#pick(bucket);
      if (entry !== undefined) {
        const w = bucket.waiters.shift()!;
        w.cleanup();
        w.resolve(this.#lease(key, entry));
        continue;
      }
      if (bucket.entries.length + bucket.dialing >= this.#maxPerKey) break;
      const w = bucket.waiters.shift()!;
      w.cleanup();
      this.#dialNew(key, bucket, w.dial, w.signal).then(w.resolve, w.reject);
    }
    this.#dropIfEmpty(key, bucket);
  }

  #remove(key: string, entry: Entry): void {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return;
    const i = bucket.entries.indexOf(entry);
    if (i < 0) return;
    bucket.entries.splice(i, 1);
    this.#service(key, bucket);
  }

  #dropIfEmpty(key: string, bucket: Bucket): void {
    if (bucket.entries.length === 0 && bucket.dialing === 0 && bucket.waiters.length === 0 && this.#buckets.get(key) === bucket) {
      this.#buckets.delete(key);
    }
  }
}
