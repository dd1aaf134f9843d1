import { SmartcopyError } from '@smartcopy/protocol';

/** Time source of a bucket; tests pass a simulated one. */
export interface Clock {
  /** seconds, monotonic */
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Number(process.hrtime.bigint()) / 1e9,
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted'));
        return;
      }
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(t);
        reject(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * One token bucket shared by every stream of a run (--bandwidth-limit). Tokens are bytes; the
 * bucket holds at most a quarter second of traffic so bursts stay short and the long-run rate
 * stays within a few percent of the limit.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly capacity: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly rate: number,
    private readonly clock: Clock = realClock,
  ) {
    if (!(rate > 0)) throw new SmartcopyError('SC_ERR_USAGE', 'a bandwidth limit must be greater than zero');
    this.capacity = Math.max(64 * 1024, rate / 4);
    this.tokens = this.capacity;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.rate);
    this.last = now;
  }

  /** Wait until `n` bytes may be sent. Callers are served in order. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      this.refill();
      this.tokens -= n; // may go negative for a chunk larger than the bucket: the debt is slept off
      if (this.tokens < 0) await this.clock.sleep((-this.tokens / this.rate) * 1000, signal);
    });
    this.queue = turn.catch(() => {});
    return turn;
  }
}
