import {
  HandlerTable,
  MsgType,
  readSignatureFrame,
  type BasisSignature,
  ProtocolError,
  SmartcopyError,
  errorFromFrame,
  type Entry,
  type Frame,
  type BatchResult,
  type Result,
  type ChunkRecordMsg,
} from '@smartcopy/protocol';
import type { Channel } from '@smartcopy/agent';

const BYE_TIMEOUT_MS = 5000;

export interface Listing {
  missing: boolean;
  isFile: boolean;
  entries: Entry[];
}

interface PendingList {
  entries: Entry[];
  resolve: (l: Listing) => void;
  reject: (e: SmartcopyError) => void;
}

/**
 * The client's view of one stream after the handshake: correlates RESULT frames with the
 * operations waiting for them, collects MANIFEST batches, and fails everything pending when the
 * stream dies. Extra frame kinds (a pulling receiver's FILE_ frames) go to `extra`.
 */
export class ClientStream {
  private readonly pending = new Map<string, (r: Result) => void>();
  private readonly lists = new Map<number, PendingList>();
  private readonly batches = new Map<number, { count: number; resolve: (r: BatchResult) => void }>();
  private readonly sigs = new Map<number, { sig: BasisSignature | null; resolve: (s: BasisSignature) => void; reject: (e: SmartcopyError) => void }>();
  private batchFiles = 0;
  private readonly resumes = new Map<number, { resolve: (c: ChunkRecordMsg[]) => void; reject: (e: SmartcopyError) => void }>();
  private nextRequest = 1;
  private settledWaiters: Array<() => void> = [];
  private dead: SmartcopyError | undefined;
  extra: ((f: Frame) => boolean) | undefined;
  private byeWaiter: ((ok: boolean) => void) | undefined;

  constructor(
    readonly ch: Channel,
    readonly index: number,
    private readonly onWarning: (e: SmartcopyError) => void,
  ) {
    ch.setHandler((f) => this.onFrame(f));
    void ch.whenClosed().then((err) => this.onClosed(err));
  }

  get inFlight(): number {
    return this.pending.size + this.batchFiles;
  }

  get failure(): SmartcopyError | undefined {
    return this.dead ?? this.ch.error;
  }

  newRequestId(): number {
    return this.nextRequest++;
  }

  /** Register interest in the RESULT for `key` before sending the frame that causes it. */
  expect(key: string): Promise<Result> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.pending.has(key)) throw new SmartcopyError('SC_ERR_INTERNAL', `duplicate wait for result ${key}`);
    return new Promise((resolve) => this.pending.set(key, resolve));
  }

  /**
   * Fail a pending operation locally (the sender could not send it). A RESULT the receiver may
   * still send for it later is ignored.
   */
  settle(key: string, err: SmartcopyError): void {
    const cb = this.pending.get(key);
    if (!cb) return;
    this.pending.delete(key);
    cb(failedResult(err));
    this.wakeSettled();
  }

  /** Resolves as soon as any pending result arrives (or the stream dies). */
  oneSettled(): Promise<void> {
    if (this.dead || this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }

  list(path: Uint8Array, opts: { recursive: boolean; hashAlgo?: string }): Promise<Listing> {
    if (this.dead) return Promise.reject(this.dead);
    const requestId = this.newRequestId();
    return new Promise((resolve, reject) => {
      this.lists.set(requestId, { entries: [], resolve, reject });
      this.ch.send(MsgType.LIST_REQUEST, {
        requestId,
        path,
        recursive: opts.recursive,
        wantHashes: opts.hashAlgo !== undefined,
        hashAlgo: opts.hashAlgo ?? '',
      });
    });
  }

  /** Send a NATIVE_BATCH and resolve with its BATCH_RESULT (all failed if the stream dies). */
  nativeBatch(firstFileId: number, entries: object[], sources: Uint8Array[]): Promise<BatchResult> {
    if (this.dead) return Promise.resolve(allFailed(firstFileId, entries.length, this.dead));
    return new Promise((resolve) => {
      this.batches.set(firstFileId, { count: entries.length, resolve });
      this.batchFiles += entries.length;
      this.ch.send(MsgType.NATIVE_BATCH, { firstFileId, entries, sources });
    });
  }

  private batchDone(r: BatchResult): void {
    const w = this.batches.get(r.firstFileId);
    if (!w) throw new ProtocolError('SC_ERR_PROTOCOL', `BATCH_RESULT for unknown batch ${r.firstFileId}`);
    this.batches.delete(r.firstFileId);
    this.batchFiles -= w.count;
    w.resolve(r);
    this.wakeSettled();
  }

  /** --delta: ask the receiver for its current file's signature (SIGNATURE_REQUEST). */
  signature(fileId: number, path: Uint8Array, seed: number, blockSize: number): Promise<BasisSignature> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.sigs.set(fileId, { sig: null, resolve, reject });
      this.ch.send(MsgType.SIGNATURE_REQUEST, { fileId, path, seed, blockSize });
    });
  }

  /** Stop waiting for a signature (its request failed). */
  dropSignature(fileId: number, err: SmartcopyError): void {
    const w = this.sigs.get(fileId);
    if (!w) return;
    this.sigs.delete(fileId);
    w.reject(err);
  }

  /** Ask the receiver which verified chunks it kept for a large file (RESUME_QUERY). */
  resumeInfo(path: Uint8Array, transferId: string): Promise<ChunkRecordMsg[]> {
    if (this.dead) return Promise.reject(this.dead);
    const requestId = this.newRequestId();
    return new Promise((resolve, reject) => {
      this.resumes.set(requestId, { resolve, reject });
      this.ch.send(MsgType.RESUME_QUERY, { requestId, path, transferId });
    });
  }

  /** Frames the agent sends a client stream, by type (a pulling receiver's go to `extra`). */
  private static readonly frames = new HandlerTable<ClientStream>('talking to the agent')
    .on(MsgType.RESULT, (f, s) => s.deliver(f.header))
    .on(MsgType.MANIFEST, (f, s) => {
      const m = f.header;
      const pl = s.lists.get(m.requestId);
      if (!pl) throw new ProtocolError('SC_ERR_PROTOCOL', `MANIFEST for unknown request ${m.requestId}`);
      for (const e of m.entries) pl.entries.push(e);
      if (m.last) {
        s.lists.delete(m.requestId);
        pl.resolve({ missing: m.missing, isFile: m.isFile, entries: pl.entries });
      }
    })
    .on(MsgType.ERROR, (f, s) => {
      const err = errorFromFrame(f.header);
      if (f.header.fatal) s.dead = err;
      else s.onWarning(err);
    })
    .on(MsgType.RESUME_INFO, (f, s) => {
      const ri = f.header;
      const w = s.resumes.get(ri.requestId);
      if (!w) throw new ProtocolError('SC_ERR_PROTOCOL', `RESUME_INFO for unknown request ${ri.requestId}`);
      s.resumes.delete(ri.requestId);
      w.resolve(ri.chunks);
    })
    .on(MsgType.BATCH_RESULT, (f, s) => s.batchDone(f.header))
    .on(MsgType.SIGNATURE, (f, s) => {
      const w = s.sigs.get(f.header.fileId);
      if (!w) throw new ProtocolError('SC_ERR_PROTOCOL', `SIGNATURE for file id ${f.header.fileId}, which was not asked for`);
      w.sig = readSignatureFrame(f.header, f.payload, w.sig);
      if (w.sig.complete) {
        s.sigs.delete(f.header.fileId);
        w.resolve(w.sig);
      }
    })
    .on(MsgType.PING, () => {})
    .on(MsgType.BYE, (_f, s) => {
      s.byeWaiter?.(true);
      s.byeWaiter = undefined;
    });

  private onFrame(f: Frame): void {
    if (!ClientStream.frames.has(f.type) && this.extra?.(f)) return;
    void ClientStream.frames.dispatch(f, this);
  }


  /**
   * An outcome for a pending operation: from a RESULT frame, or from the local receiver when
   * this side receives (pull). A late duplicate (a pull sender's failure after the receiver's own
   * verdict) finds nothing pending and is dropped.
   */
  deliver(r: Result): void {
    const key = r.requestId ? `r${r.requestId}` : `${r.fileId}:${r.offset}`;
    const cb = this.pending.get(key);
    if (!cb) return;
    this.pending.delete(key);
    cb(r);
    this.wakeSettled();
  }

  private wakeSettled(): void {
    const ws = this.settledWaiters;
    this.settledWaiters = [];
    for (const w of ws) w();
  }

  private onClosed(err: SmartcopyError | undefined): void {
    this.dead ??= err ?? new SmartcopyError('SC_ERR_CONNECTION_CLOSED', 'the agent closed the connection', { retryable: true });
    const failed = failedResult(this.dead);
    for (const cb of this.pending.values()) cb(failed);
    this.pending.clear();
    for (const l of this.lists.values()) l.reject(this.dead);
    this.lists.clear();
    for (const r of this.resumes.values()) r.reject(this.dead);
    this.resumes.clear();
    for (const w of this.sigs.values()) w.reject(this.dead);
    this.sigs.clear();
    for (const [first, b] of this.batches) b.resolve(allFailed(first, b.count, this.dead));
    this.batches.clear();
    this.batchFiles = 0;
    this.byeWaiter?.(false);
    this.byeWaiter = undefined;
    this.wakeSettled();
  }

  /**
   * Orderly end of this stream's part in the session: BYE, and wait for the agent's BYE. With
   * `keep`, the stream stays open for another session (returns true when it can be reused);
   * otherwise it is ended and closed.
   */
  async bye(opts: { keep?: boolean } = {}): Promise<boolean> {
    if (!this.ch.isOpen || this.dead) {
      await this.ch.close();
      return false;
    }
    const answered = new Promise<boolean>((resolve) => {
      this.byeWaiter = resolve;
      setTimeout(() => resolve(false), BYE_TIMEOUT_MS).unref();
    });
    this.ch.send(MsgType.BYE, {});
    const ok = await answered;
    if (opts.keep && ok && this.ch.isOpen && this.pending.size === 0) return true;
    await this.ch.stream.end().catch(() => {});
    await Promise.race([this.ch.whenClosed(), new Promise((r) => setTimeout(r, BYE_TIMEOUT_MS).unref())]);
    await this.ch.close();
    return false;
  }
}

export function failedResult(err: SmartcopyError): Result {
  return {
    fileId: 0,
    ok: false,
    offset: 0,
    bytesWritten: 0,
    requestId: 0,
    error: { code: err.wireCode, codeName: err.code, message: err.message, path: new Uint8Array() },
  };
}

function allFailed(firstFileId: number, count: number, err: SmartcopyError): BatchResult {
  const info = { code: err.wireCode, codeName: err.code, message: err.message, path: new Uint8Array() };
  return { firstFileId, count, failed: Array.from({ length: count }, (_, i) => i), errors: Array.from({ length: count }, () => info) };
}
