import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { SmartcopyError, type BasisSignature, type DeltaBatch, type MatchStats } from '@smartcopy/protocol';

const WORKER_URL = new URL('./match-worker.js', import.meta.url);

export interface MatchEnd {
  hash: Buffer | null;
  stats: MatchStats;
  size: number;
}

type Out = { kind: 'batches'; id: number; batches: DeltaBatch[]; end?: MatchEnd } | { kind: 'error'; id: number; code: string; message: string };

interface Pending {
  resolve: (r: { batches: DeltaBatch[]; end?: MatchEnd }) => void;
  reject: (e: SmartcopyError) => void;
}

/**
 * Worker threads that run delta matching, so several files are matched at once on several
 * cores. A job is pulled in steps (`next()`), which keeps the literals waiting to be sent bounded.
 * Idle workers do not keep the process alive.
 */
export class MatchPool {
  private workers: Worker[] = [];
  private nextWorker = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly owner = new Map<number, Worker>();

  constructor(private readonly size = Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length))) {}

  private worker(): Worker {
    if (this.workers.length < this.size) {
      const w = new Worker(WORKER_URL, { execArgv: [] });
      w.unref();
      w.on('message', (m: Out) => this.onMessage(m));
      w.on('error', (e) => this.failAll(w, e));
      w.on('exit', () => this.failAll(w, new Error('the delta matcher thread stopped')));
      this.workers.push(w);
      return w;
    }
    return this.workers[this.nextWorker++ % this.workers.length]!;
  }

  private onMessage(m: Out): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.kind === 'error') {
      const code = m.code === 'ENOENT' ? 'SC_ERR_VANISHED' : m.code === 'ELOOP' ? 'SC_ERR_PATH_ESCAPE' : 'SC_ERR_IO';
      p.reject(new SmartcopyError(code, m.message));
      this.owner.delete(m.id);
      return;
    }
    for (const b of m.batches) b.literals = Buffer.from(b.literals.buffer, b.literals.byteOffset, b.literals.byteLength);
    if (m.end) {
      this.owner.delete(m.id);
      if (m.end.hash) m.end.hash = Buffer.from(m.end.hash.buffer, m.end.hash.byteOffset, m.end.hash.byteLength);
    }
    p.resolve({ batches: m.batches, end: m.end });
  }

  private failAll(w: Worker, e: Error): void {
    this.workers = this.workers.filter((x) => x !== w);
    for (const [id, owner] of this.owner) {
      if (owner !== w) continue;
      this.owner.delete(id);
      this.pending.get(id)?.reject(new SmartcopyError('SC_ERR_INTERNAL', `delta matching failed: ${e.message}`));
      this.pending.delete(id);
    }
  }

  private ask(id: number, w: Worker, msg: object): Promise<{ batches: DeltaBatch[]; end?: MatchEnd }> {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage(msg);
    }).finally(() => {
      if (![...this.owner.values()].includes(w)) w.unref();
    }) as Promise<{ batches: DeltaBatch[]; end?: MatchEnd }>;
  }

  /** Match `src` against `sig`; yields batches of ops as they are found, then the end record. */
  async *match(src: Buffer, sig: BasisSignature, seed: number, noFollow: boolean): AsyncGenerator<DeltaBatch[], MatchEnd> {
    const id = this.nextId++;
    const w = this.worker();
    this.owner.set(id, w);
    const params = { blockSize: sig.blockSize, strongLength: sig.strongLength, basisSize: sig.basisSize, blockCount: sig.blockCount };
    let step = await this.ask(id, w, { kind: 'start', id, src: new Uint8Array(src), params, sums: sig.packSums(), seed, noFollow });
    try {
      for (;;) {
        if (step.end) {
          if (step.batches.length > 0) yield step.batches;
          return step.end;
        }
        // ask for the next step before handing this one out, so matching overlaps sending
        // (at most two steps of literals are ever waiting)
        const next = this.ask(id, w, { kind: 'more', id });
        next.catch(() => {});
        if (step.batches.length > 0) yield step.batches;
        step = await next;
      }
    } finally {
      if (this.owner.has(id)) {
        this.owner.delete(id);
        w.postMessage({ kind: 'cancel', id });
      }
    }
  }
}

let shared: MatchPool | undefined;
export function sharedMatchPool(): MatchPool {
  return (shared ??= new MatchPool());
}
