import type dgram from 'node:dgram';
import type { NativeConnection } from './binding.js';

/** SO_SNDBUF / SO_RCVBUF asked for (the kernel caps them at net.core.[rw]mem_max). */
export const QUIC_SOCKET_BUFFER = 4 * 1024 * 1024;
/**
 * Reusable send buffers per socket: enough for two full send passes, at most about one socket
 * send buffer's worth of bytes (fewer slots for big datagrams: a pass then pauses until the
 * kernel has taken some, which is the backpressure we want anyway).
 */
const RING_BYTES = 4 * 1024 * 1024;
const MIN_RING_SLOTS = 64;
const MAX_RING_SLOTS = 1024;
/** A completion callback on every N-th datagram tells which ring slots are free again. */
const COMPLETION_EVERY = 32;
/**
 * One send pass emits at most this many datagrams, or this many bytes, then yields so that
 * ACKs arriving meanwhile get read and the receiver's socket buffer is not flooded in one burst.
 */
export const SEND_PASS_LIMIT = 512;
const SEND_PASS_BYTES = 1024 * 1024;

/** Something the endpoint flushes once per event-loop turn when marked dirty. */
export interface Flushable {
  flush(): void;
}

/**
 * One UDP socket and what every connection on it shares: a ring of reusable send buffers and
 * a once-per-turn flush.
 *
 * Why a ring: `socket.send()` does not always copy the bytes right away. On an unconnected
 * socket Node sends on the next tick, after its address lookup (the listener's socket answers
 * that lookup at once, but nothing else promises that); on any socket whose kernel buffer is
 * full, libuv queues the request and keeps pointing at the buffer. Reusing one buffer would
 * silently corrupt datagrams, and allocating one per datagram is what made the high-level
 * library slow. Datagrams complete in order, so a completion
 * callback on every COMPLETION_EVERY-th one frees all slots up to it; a full ring stops the send
 * pass (quiche keeps the packets unsent) until a completion frees slots.
 *
 * Why a once-per-turn flush: all datagrams that arrived in one poll phase are fed to quiche
 * first, then one flush (setImmediate) reads streams, refills them and runs one send pass, so
 * ACKs and window updates go out batched instead of one send pass per datagram.
 */
export class UdpEndpoint {
  readonly socket: dgram.Socket;
  /** a connect()ed client socket: sends need no address and are immediate */
  readonly connected: boolean;
  readonly #slots: Buffer[];
  readonly #passLimit: number;
  #seq = 0;
  #completed = 0;
  readonly #ringWaiters = new Set<Flushable>();
  #dirty = new Set<Flushable>();
  #spare = new Set<Flushable>();
  #immediate: NodeJS.Immediate | undefined;
  #closing: Promise<void> | undefined;

  constructor(socket: dgram.Socket, maxPayload: number, connected: boolean) {
    this.socket = socket;
    this.connected = connected;
    const n = Math.min(MAX_RING_SLOTS, Math.max(MIN_RING_SLOTS, Math.floor(RING_BYTES / maxPayload)));
    // one slab, sliced: a single allocation that lives as long as the socket
    const slab = Buffer.allocUnsafe(n * maxPayload);
    this.#slots = Array.from({ length: n }, (_, i) => slab.subarray(i * maxPayload, (i + 1) * maxPayload));
    this.#passLimit = Math.max(COMPLETION_EVERY, Math.min(SEND_PASS_LIMIT, Math.floor(SEND_PASS_BYTES / maxPayload)));
  }

  get isClosed(): boolean {
    return this.#closing !== undefined;
  }

  markDirty(f: Flushable): void {
    if (this.#closing !== undefined) return;
    this.#dirty.add(f);
    this.#immediate ??= setImmediate(this.#runFlush);
  }

  readonly #runFlush = (): void => {
    this.#immediate = undefined;
    // swap the sets: flushes that mark themselves dirty again run on the next turn
    const batch = this.#dirty;
    this.#dirty = this.#spare;
    this.#spare = batch;
    for (const f of batch) f.flush();
    batch.clear();
  };

  /**
   * Drain `conn.send()` into the ring and the socket. Returns true when quiche has nothing more
   * to send, false when the pass stopped early: at the pass limit (the caller flushes again
   * next turn) or on a full ring (`owner` is flushed when slots free up).
   */
  sendPass(conn: NativeConnection, owner: Flushable): boolean {
    if (this.#closing !== undefined) return true;
    const slots = this.#slots;
    const n = slots.length;
    const socket = this.socket;
    let seq = this.#seq;
    try {
      for (let i = 0, limit = this.#passLimit; i < limit; i++) {
        if (seq - this.#completed >= n) {
          this.#ringWaiters.add(owner);
          return false;
        }
        const slot = slots[seq % n]!;
        const r = conn.send(slot);
        if (r === null) return true;
        seq++;
        const cb = seq % COMPLETION_EVERY === 0 ? this.#completion(seq) : undefined;
        const datagram = slot.subarray(0, r[0]);
        if (this.connected) socket.send(datagram, cb);
        else socket.send(datagram, r[1].to.port, r[1].to.host, cb);
      }
      return false;
    } finally {
      this.#seq = seq;
    }
  }

  #completion(seq: number): () => void {
    // a send error is a lost datagram to QUIC: its loss recovery resends what mattered
    return () => {
      if (seq <= this.#completed) return;
      this.#completed = seq;
      if (this.#ringWaiters.size === 0) return;
      for (const w of this.#ringWaiters) this.markDirty(w);
      this.#ringWaiters.clear();
    };
  }

  /** Close the socket once the datagrams already handed to Node have left (bounded wait). */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      if (this.#immediate !== undefined) clearImmediate(this.#immediate);
      this.#immediate = undefined;
      this.#dirty.clear();
      this.#ringWaiters.clear();
      let turns = 0;
      const finish = (): void => {
        // deferred sends of an unconnected socket run on the next tick; queued ones in libuv
        // finish as the kernel buffer drains — a CONNECTION_CLOSE should get out
        let queued = 0;
        try {
          queued = this.socket.getSendQueueCount();
        } catch {
          queued = 0;
        }
        if (queued > 0 && ++turns < 100) {
          setTimeout(finish, 1);
          return;
        }
        try {
          this.socket.close(() => resolve());
        } catch {
          resolve();
        }
      };
      setImmediate(finish);
    });
    return this.#closing;
  }
}
