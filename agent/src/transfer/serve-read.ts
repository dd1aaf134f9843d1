import { BasisSignature, MsgType, ProtocolError, SmartcopyError, type HashAlgo, type ReadRequest } from '@smartcopy/protocol';
import { sendDeltaFile } from './delta.js';
import type { PathJail } from '../jail/index.js';
import type { Channel } from '../session/channel.js';
import { sharedPool } from '../util/index.js';
import { sendChunk, sendWholeFile, type SendOptions, type WireEntry } from './send.js';
import { TokenBucket } from './throttle.js';

/** What a sending agent knows about its session. */
export interface SenderConfig {
  jail: PathJail;
  features: readonly string[];
  /** one bucket for the whole session, made by the first request that asks for a limit */
  bucket?: TokenBucket;
}

/**
 * Pull: the client asks the agent to send files (READ_REQUEST). Each item names a source path
 * under the agent's root and the destination path the client wants it under; the agent answers
 * with the same FILE_/CHUNK_ frames a pushing client would send, then a RESULT for the request.
 * Failures of single files go back as RESULT frames for their file id; the stream stays usable.
 */
export async function serveRead(ch: Channel, cfg: SenderConfig, req: ReadRequest, signal?: AbortSignal, payload?: Buffer): Promise<void> {
  const opts: SendOptions = {
    hashAlgo: (req.hashAlgo || 'xxhash64') as HashAlgo,
    verifyAlgo: (req.verifyAlgo || undefined) as HashAlgo | undefined,
    native: false,
    compress: req.compress,
    fsync: false,
    pool: sharedPool(),
    throttle: undefined,
    noFollow: true,
  };
  if (req.bandwidthLimit > 0) {
    cfg.bucket ??= new TokenBucket(req.bandwidthLimit);
    const bucket = cfg.bucket;
    opts.throttle = (n) => bucket.take(n, signal);
  }
  for (const item of req.items) {
    if (signal?.aborted || !ch.isOpen) return;
    const e = item.entry;
    if (!e) continue;
    const display = Buffer.from(e.path).toString('utf8');
    const dest: WireEntry = { ...e, path: item.destPath };
    try {
      const src = await cfg.jail.ensureParent(e.path, { create: false });
      if (item.delta) {
        // the request's payload is the signature of the client's copy (one delta item per request)
        const sig = new BasisSignature({
          blockSize: item.deltaBlockSize,
          strongLength: item.deltaStrongLength,
          basisSize: item.deltaBasisSize,
          blockCount: item.deltaBlockSize > 0 ? Math.ceil(item.deltaBasisSize / item.deltaBlockSize) : -1,
        }).addSums(payload ?? Buffer.alloc(0));
        if (!sig.complete) throw new ProtocolError('SC_ERR_PROTOCOL', 'a delta READ_REQUEST carries an incomplete signature');
        // literals are the changed bytes: compress them whenever that pays
        await sendDeltaFile(ch, item.fileId, src, dest, display, sig, item.deltaSeed, { ...opts, compress: true });
      } else if (item.chunk) await sendChunk(ch, item.fileId, src, dest, item.transferId, item.offset, item.length, display, opts);
      else await sendWholeFile(ch, item.fileId, src, dest, display, opts);
    } catch (err) {
      if (!ch.isOpen) return;
      const se = err instanceof SmartcopyError ? err : new SmartcopyError('SC_ERR_IO', String(err), { path: display });
      ch.send(MsgType.RESULT, {
        fileId: item.fileId,
        offset: item.offset,
        ok: false,
        error: { code: se.wireCode, codeName: se.code, message: se.message, path: e.path },
      });
    }
  }
  ch.send(MsgType.RESULT, { requestId: req.requestId, ok: true });
}
