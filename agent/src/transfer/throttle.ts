import { SmartcopyError } from '@smartcopy/protocol';

/**
 * One token bucket shared by every stream of a run (--bandwidth-limit). Tokens are bytes; the
 * bucket holds at most a quarter second of traffic so bursts stay short and the long-run rate
 * stays within a few percent of the limit.
 */
export class TokenBucket {
  private tokens: number;
  private last = process.hrtime.bigint();
  private readonly capacity: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly rate: number) {
    this.capacity = Math.max(64 * 1024, rate / 4);
    this.tokens = this.capacity;
  }

  private refill(): void {
    const now = process.hrtime.bigint();
    this.tokens = Math.min(this.capacity, this.tokens + (Number(now - this.last) / 1e9) * this.rate);
    this.last = now;
  }

  /** Wait until `n` bytes may be sent. Callers are served in order. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      this.refill();
      this.tokens -= n; // may go negative for a chunk larger than the bucket: the debt is slept off
      if (this.tokens < 0) {
        const ms = (-this.tokens / this.rate) * 1000;
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, ms);
          signal?.addEventListener('abort', () => {
            clearTimeout(t);
            reject(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted'));
          }, { once: true });
        });
      }
    });
    this.queue = turn.catch(() => {});
    return turn;
  }
}
