import { Worker } from 'node:worker_threads';
import { EntryType, SmartcopyError } from '@smartcopy/protocol';
import { unpackBatch, type PackedBatch } from './pack.js';
import type { RootKind, ScanEntry, ScanOptions, ScanResult } from './types.js';

const WORKER_URL = new URL('./walk-worker.js', import.meta.url);

type WorkerMsg =
  | { kind: 'batch'; batch: PackedBatch }
  | { kind: 'done'; rootKind: RootKind; errors: Array<{ path: Uint8Array; code: string; message: string }> }
  | { kind: 'fatal'; message: string };

/**
 * List a tree. The walk runs in a worker thread with blocking syscalls, so two listings (source
 * and destination) proceed in parallel on two cores while the main thread stays responsive.
 * Entries come back in walk order: the root first, parents before children.
 */
export function scanTree(root: Buffer, opts: ScanOptions = {}, signal?: AbortSignal): Promise<ScanResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData: { root: new Uint8Array(root), opts } });
    const entries: ScanEntry[] = [];
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (): void => {
      void worker.terminate();
      finish(() => reject(new SmartcopyError('SC_ERR_INTERRUPTED', 'scan interrupted')));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: WorkerMsg) => {
      if (m.kind === 'batch') unpackBatch(m.batch, entries);
      else if (m.kind === 'done') {
        void worker.terminate();
        finish(() =>
          resolve({
            rootKind: m.rootKind,
            entries,
            errors: m.errors.map((e) => ({ path: Buffer.from(e.path), code: e.code, message: e.message })),
          }),
        );
      } else {
        void worker.terminate();
        finish(() => reject(new SmartcopyError('SC_ERR_INTERNAL', `scan worker failed: ${m.message}`)));
      }
    });
    worker.on('error', (err) => finish(() => reject(new SmartcopyError('SC_ERR_INTERNAL', `scan worker failed: ${err.message}`, { cause: err }))));
    worker.on('exit', (code) => {
      if (!settled) finish(() => reject(new SmartcopyError('SC_ERR_INTERNAL', `scan worker exited with code ${code}`)));
    });
  });
}

export function isDirEntry(e: ScanEntry): boolean {
  return e.type === EntryType.DIRECTORY;
}
