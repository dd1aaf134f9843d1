import { EntryType, MsgType, SmartcopyError, type ListRequest } from '@smartcopy/protocol';
import type { PathJail } from '../jail/index.js';
import { scanTreeInline } from '../scan/index.js';
import type { ScanEntry } from '../scan/index.js';
import type { Channel } from './channel.js';
import type { WireEntry } from '../transfer/send.js';
import { errorInfo } from './results.js';

/** Entries per MANIFEST frame: big enough to amortise framing, far below the frame limit. */
const ENTRIES_PER_FRAME = 2048;

/** Wire form of a listing entry (the schema's Entry), with the path replaced. */
export function toWireEntry(e: ScanEntry, path: Uint8Array = e.path): WireEntry {
  return { ...e, path };
}

/**
 * Answer a LIST_REQUEST: list a path under the jail and stream MANIFEST frames back. Listing
 * errors of single entries are reported as non-fatal ERROR frames; a path that does not exist
 * is an empty listing with `missing` set.
 */
export async function serveList(ch: Channel, jail: PathJail, req: ListRequest, signal?: AbortSignal): Promise<void> {
  let abs: Buffer;
  try {
    abs = await jail.ensureParent(req.path, { create: false });
  } catch (e) {
    if (e instanceof SmartcopyError && e.code === 'SC_ERR_NOT_FOUND') {
      ch.send(MsgType.MANIFEST, { requestId: req.requestId, last: true, missing: true });
      return;
    }
    throw e;
  }
  const res = await scanTreeInline(
    abs,
    {
      hashAlgo: req.wantHashes ? req.hashAlgo || 'xxhash64' : undefined,
      shallow: !req.recursive,
      followRootLink: false,
      hideParts: true,
    },
    signal,
  );
  for (const err of res.errors) {
    const code = err.code === 'ENOENT' ? 'SC_ERR_VANISHED' : err.code === 'EACCES' ? 'SC_ERR_PERMISSION' : 'SC_ERR_IO';
    ch.send(MsgType.ERROR, { fatal: false, error: { ...errorInfo(new SmartcopyError(code, err.message)), path: err.path } });
  }
  if (res.rootKind === 'missing') {
    ch.send(MsgType.MANIFEST, { requestId: req.requestId, last: true, missing: true });
    return;
  }
  const isFile = res.rootKind !== 'directory';
  const all = res.entries;
  for (let i = 0; i < all.length || i === 0; i += ENTRIES_PER_FRAME) {
    const slice = all.slice(i, i + ENTRIES_PER_FRAME).map((e) => toWireEntry(e));
    const last = i + ENTRIES_PER_FRAME >= all.length;
    if (!ch.send(MsgType.MANIFEST, { requestId: req.requestId, entries: slice, last, isFile })) await ch.drain();
  }
}

export function isDirType(t: number): boolean {
  return t === EntryType.DIRECTORY;
}
