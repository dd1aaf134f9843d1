import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { HashAlgo } from '@smartcopy/protocol';
import { EntryType } from '@smartcopy/protocol/schema/messages';
import { BatchPacker } from './pack.js';
import type { ScanEntry, ScanOptions } from './types.js';
import { walkSync } from './walk.js';

interface Job {
  root: Uint8Array;
  opts: ScanOptions;
}

const HASH_BUF = 1 << 20;

async function hashFileSync(abs: Buffer, algo: HashAlgo, buf: Buffer): Promise<Buffer> {
  // Loaded only for --checksum: most walks never hash.
  const { createHasher } = await import('@smartcopy/protocol/codec/hash');
  const h = await createHasher(algo);
  const fd = fs.openSync(abs, 'r');
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest();
}

async function run(job: Job): Promise<void> {
  const port = parentPort!;
  const root = Buffer.from(job.root);
  const packer = new BatchPacker();
  const hashAlgo = job.opts.hashAlgo as HashAlgo | undefined;
  const toHash: ScanEntry[] = [];
  const flush = (): void => {
    if (packer.length === 0) return;
    const b = packer.take();
    port.postMessage({ kind: 'batch', batch: b }, [b.nums.buffer as ArrayBuffer, b.bytes.buffer as ArrayBuffer]);
  };
  const errors: Array<{ path: Uint8Array; code: string; message: string }> = [];
  const rootKind = walkSync(root, job.opts, {
    entry(e) {
      if (hashAlgo && e.type === EntryType.FILE) {
        toHash.push(e);
        return;
      }
      if (packer.add(e)) flush();
    },
    error(path, code, message) {
      errors.push({ path, code, message });
    },
  });
  if (toHash.length > 0) {
    const buf = Buffer.allocUnsafe(HASH_BUF);
    const slash = Buffer.from('/');
    for (const e of toHash) {
      const abs = e.path.length === 0 ? root : Buffer.concat([root, slash, e.path]);
      try {
        e.hash = await hashFileSync(abs, hashAlgo!, buf);
      } catch (err) {
        const x = err as NodeJS.ErrnoException;
        errors.push({ path: e.path, code: x.code ?? 'EIO', message: `cannot read for --checksum: ${x.code ?? x.message}` });
        continue;
      }
      if (packer.add(e)) flush();
    }
  }
  flush();
  port.postMessage({ kind: 'done', rootKind, errors });
}

run(workerData as Job).catch((err: unknown) => {
  parentPort!.postMessage({ kind: 'fatal', message: String((err as Error)?.stack ?? err) });
});
