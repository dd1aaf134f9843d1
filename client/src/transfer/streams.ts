import { FEATURE_CHUNKS, SmartcopyError } from '@smartcopy/protocol';
import type { Connection } from '@smartcopy/transports';
import type { RunEvents } from '../progress/accounting.js';
import { ClientStream } from '../session/client-stream.js';
import { openChannel, recycleChannel, type HandshakeOptions } from '../session/connect.js';

/** Open streams 1..count-1 next to the control stream, in parallel. A stream that fails to open is reported; the others carry on. */
export async function openMoreStreams(
  conn: Connection,
  hs: Omit<HandshakeOptions, 'index'>,
  want: number,
  streams: ClientStream[],
  events: RunEvents,
): Promise<void> {
  const warn = (e: SmartcopyError): void => events.error(e);
  const more = await Promise.allSettled(Array.from({ length: Math.max(0, want - 1) }, (_, i) => openChannel(conn, { ...hs, index: i + 1 })));
  let reported = false;
  for (const [i, r] of more.entries()) {
    if (r.status === 'fulfilled') streams.push(new ClientStream(r.value.ch, i + 1, warn));
    else if (!reported) {
      reported = true;
      const e = r.reason instanceof SmartcopyError ? r.reason : new SmartcopyError('SC_ERR_CONNECT', String(r.reason));
      events.error(new SmartcopyError(e.code, `could not open every parallel stream (${e.message}); continuing with fewer`));
    }
  }
}

/**
 * End every stream's session (BYE), and raise the reason when all of them died. With `recycle`,
 * streams whose BYE was answered are kept on the connection for the next job (connection pool).
 */
export async function finishStreams(streams: ClientStream[], hadWork: boolean, signal: AbortSignal, recycle?: Connection): Promise<void> {
  const dead = streams.map((s) => s.failure).find((f) => f && f.code !== 'SC_ERR_CONNECTION_CLOSED');
  const lost = streams.every((s) => s.failure);
  await Promise.all(
    streams.map(async (s) => {
      if (await s.bye({ keep: recycle !== undefined && !signal.aborted })) recycleChannel(recycle!, s.ch);
    }),
  );
  if (lost && hadWork && !signal.aborted) {
    throw dead ?? streams[0]!.failure ?? new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'connection lost');
  }
}

export function wireBytes(streams: readonly ClientStream[]): number {
  return streams.reduce((n, s) => n + s.ch.stream.bytesWritten + s.ch.stream.bytesRead, 0);
}

export function hasChunks(features: readonly string[]): boolean {
  return features.includes(FEATURE_CHUNKS);
}

/**
 * Names the shared .part of a chunked file. Derived from what is being copied (destination path,
 * size, mtime), so an interrupted run and its rerun find the same .part and its chunk record.
 */
export function chunkTransferId(dest: Uint8Array, size: number, mtimeSec: number, mtimeNsec: number): string {
  let h = 0xcbf29ce484222325n;
  const feed = (b: Uint8Array): void => {
    for (const x of b) h = BigInt.asUintN(64, (h ^ BigInt(x)) * 0x100000001b3n);
  };
  feed(dest);
  feed(Buffer.from(`:${size}:${mtimeSec}:${mtimeNsec}`));
  return `c${h.toString(36)}`;
}
