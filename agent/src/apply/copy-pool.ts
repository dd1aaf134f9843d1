import { Worker } from 'node:worker_threads';
import type { CopyJob, JobOutcome } from './sync-ops.js';

/** Copy workers: 2 measured best on this 2-core machine (3 was no faster, 1 no faster than the main thread). */
export const DEFAULT_COPY_WORKERS = 2;
/** Most files per message: big enough to amortise the round trip, small enough to balance workers. */
export const MAX_COPY_BATCH = 64;
/** Batches queued at each worker, so it starts the next while the main thread handles a reply. */
const SLOTS_PER_WORKER = 2;

const WORKER_URL = new URL('./copy-worker.js', import.meta.url);

export interface CopyPoolOptions {
  workers?: number;
  maxBatch?: number;
}

/** Jobs submitted together complete together: one promise per group, not per job. */
interface Group {
  outcomes: JobOutcome[];
  remaining: number;
  resolve: (o: JobOutcome[]) => void;
}

interface Pending {
  job: CopyJob;
  group: Group;
  index: number;
  transfer: ArrayBuffer | undefined;
}

function complete(p: Pending, o: JobOutcome): void {
  const g = p.group;
  g.outcomes[p.index] = o;
  if (--g.remaining === 0) g.resolve(g.outcomes);
}

interface WorkerState {
  worker: Worker;
  inflight: Map<number, Pending[]>;
  dead: boolean;
}

function poolError(message: string): JobOutcome {
  return { error: { code: 'EWORKER', syscall: undefined, message, stage: 'dest' } };
}

/**
 * A small pool of worker threads that run batches of small-file jobs as synchronous syscalls.
 * Jobs submitted in the same turn of the event loop are coalesced into batches; workers are
 * started on first use and unref'd while idle, so an idle pool never keeps the process alive.
 */
export class CopyPool {
  private readonly size: number;
  private readonly maxBatch: number;
  private readonly workers: WorkerState[] = [];
  private queue: Pending[] = [];
  private head = 0;
  private scheduled = false;
  private nextId = 1;
  private closed = false;

  constructor(opts: CopyPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.workers ?? DEFAULT_COPY_WORKERS));
    this.maxBatch = Math.max(1, Math.floor(opts.maxBatch ?? MAX_COPY_BATCH));
  }

  /**
   * Run one job. Never rejects: failures come back as `{ error }`. `transfer` is moved to the
   * worker instead of being copied (the caller must not touch it afterwards).
   */
  run(job: CopyJob, transfer?: ArrayBuffer): Promise<JobOutcome> {
    return this.runMany([job], transfer ? [transfer] : undefined).then((o) => o[0]!);
  }

  /** Run several jobs; outcomes in the same order. `transfers[i]` belongs to `jobs[i]`. */
  runMany(jobs: readonly CopyJob[], transfers?: ReadonlyArray<ArrayBuffer | undefined>): Promise<JobOutcome[]> {
    if (jobs.length === 0) return Promise.resolve([]);
    if (this.closed) return Promise.resolve(jobs.map(() => poolError('the copy pool is closed')));
    return new Promise((resolve) => {
      const group: Group = { outcomes: new Array<JobOutcome>(jobs.length), remaining: jobs.length, resolve };
      for (let i = 0; i < jobs.length; i++) this.queue.push({ job: jobs[i]!, group, index: i, transfer: transfers?.[i] });
      if (this.queue.length - this.head >= this.maxBatch) this.pump();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  /** Stop the workers; queued and running jobs fail. */
  async close(): Promise<void> {
    this.closed = true;
    const queued = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const p of queued) complete(p, poolError('the copy pool is closed'));
    const ws = this.workers.splice(0);
    await Promise.all(
      ws.map(async (w) => {
        w.dead = true;
        await w.worker.terminate();
        this.failInflight(w, 'the copy pool is closed');
      }),
    );
  }

  private queued(): number {
    return this.queue.length - this.head;
  }

  private pump(): void {
    while (this.queued() > 0 && !this.closed) {
      while (this.workers.length < this.size) this.workers.push(this.spawn());
      let best: WorkerState | undefined;
      let free = 0;
      for (const w of this.workers) {
        const f = SLOTS_PER_WORKER - w.inflight.size;
        if (f <= 0) continue;
        free += f;
        if (!best || w.inflight.size < best.inflight.size) best = w;
      }
      if (!best) return;
      // spread what is queued over the free slots, so one short burst still uses every worker
      const n = Math.min(this.maxBatch, Math.max(1, Math.ceil(this.queued() / free)));
      const batch = this.queue.slice(this.head, this.head + n);
      this.head += n;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.send(best, batch);
    }
  }

  private send(w: WorkerState, batch: Pending[]): void {
    const id = this.nextId++;
    const transfer: ArrayBuffer[] = [];
    for (const p of batch) if (p.transfer) transfer.push(p.transfer);
    if (w.inflight.size === 0) w.worker.ref();
    w.inflight.set(id, batch);
    w.worker.postMessage({ id, jobs: batch.map((p) => p.job) }, transfer);
  }

  private spawn(): WorkerState {
    // The copy workers need none of the parent's node flags, and some (--input-type from `node -e`,
    // --trace-gc, ...) make the Worker constructor throw, which would take the agent down.
    const worker = new Worker(WORKER_URL, { execArgv: [] });
    const w: WorkerState = { worker, inflight: new Map(), dead: false };
    worker.on('message', (msg: { id: number; outcomes: JobOutcome[] }) => {
      const batch = w.inflight.get(msg.id);
      if (!batch) return;
      w.inflight.delete(msg.id);
      if (w.inflight.size === 0) worker.unref();
      batch.forEach((p, i) => {
        const o = msg.outcomes[i];
        complete(p, o === undefined ? poolError('the copy worker returned no outcome') : o);
      });
      this.pump();
    });
    const lost = (why: string): void => {
      if (w.dead) return;
      w.dead = true;
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      this.failInflight(w, why);
      if (!this.closed) this.pump();
    };
    worker.on('error', (err) => lost(`a copy worker failed: ${err.message}`));
    worker.on('exit', (code) => lost(`a copy worker exited (code ${code})`));
    // after the listeners: adding a 'message' listener refs the worker again
    worker.unref();
    return w;
  }

  private failInflight(w: WorkerState, why: string): void {
    for (const batch of w.inflight.values()) for (const p of batch) complete(p, poolError(why));
    w.inflight.clear();
  }
}

let shared: CopyPool | undefined;

/** The process-wide copy pool (DEFAULT_COPY_WORKERS workers, started on first use). */
export function defaultCopyPool(): CopyPool {
  shared ??= new CopyPool();
  return shared;
}
