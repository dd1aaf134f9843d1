import type { HashAlgo, SmartcopyError } from '@smartcopy/protocol';
import type { Applier, FileMeta } from '../apply/index.js';

export interface NativeItem {
  src: Buffer;
  rel: Uint8Array;
  meta: FileMeta;
  transferId: string;
  verify: { algo: HashAlgo; expected: Buffer } | undefined;
}

/** Small files per batch handed to the applier's copy workers. */
const BATCH = 64;

/**
 * Collects same-host native copies that arrive one frame at a time and hands them to the
 * applier in batches, which copies small files with far fewer event-loop round trips than one
 * promise per syscall. Files that need --verify go one by one (they are read twice anyway).
 */
export class NativeBatcher {
  private items: NativeItem[] = [];
  private waiters: Array<(r: SmartcopyError | null) => void> = [];
  private failers: Array<(e: unknown) => void> = [];
  private scheduled = false;

  constructor(private readonly applier: Applier) {}

  add(item: NativeItem): Promise<SmartcopyError | null> {
    if (item.verify) {
      return this.applier
        .nativeCopy(item.src, item.rel, item.meta, item.transferId, { verify: item.verify })
        .then(() => null, (e: SmartcopyError) => e);
    }
    return new Promise((resolve, reject) => {
      this.items.push(item);
      this.waiters.push(resolve);
      this.failers.push(reject);
      if (this.items.length >= BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.items.length === 0) return;
    const items = this.items;
    const waiters = this.waiters;
    const failers = this.failers;
    this.items = [];
    this.waiters = [];
    this.failers = [];
    this.applier.nativeCopyBatch(items).then(
      (results) => results.forEach((r, i) => waiters[i]!(r)),
      (err: unknown) => failers.forEach((f) => f(err)),
    );
  }
}
