/**
 * Holds nodes that have planned until every node has (or has given up), so that all of them have
 * declared what they will read before the first block is read. A node that is slow to connect or
 * list holds the others back for at most `maxWaitMs` after the first one is ready; after that it
 * joins late and reads again what the others have already sent (counted as re-reads).
 */
export class PlanGate {
  private pending: number;
  private open = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly waiters: Array<() => void> = [];

  constructor(
    members: number,
    private readonly maxWaitMs: number,
  ) {
    this.pending = members;
    if (members <= 0) this.open = true;
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** One member's handle: arrive() once planned, leave() when its attempt ends (either order, each at most once). */
  member(): { arrive(signal?: AbortSignal): Promise<void>; leave(): void } {
    let counted = true;
    const out = (): void => {
      if (!counted) return;
      counted = false;
      if (--this.pending <= 0) this.release();
    };
    return {
      arrive: (signal) => {
        out();
        if (this.open) return Promise.resolve();
        this.timer ??= setTimeout(() => this.release(), this.maxWaitMs);
        return new Promise<void>((resolve) => {
          // an interrupted run stops waiting (and its timer); the send that follows sees the aborted signal
          const abort = (): void => this.release();
          this.waiters.push(() => {
            signal?.removeEventListener('abort', abort);
            resolve();
          });
          if (signal?.aborted) this.release();
          else signal?.addEventListener('abort', abort, { once: true });
        });
      },
      leave: out,
    };
  }

  private release(): void {
    if (this.open) return;
    this.open = true;
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w();
  }
}
