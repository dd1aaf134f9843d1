/*
 * TypeScript shapes of the messages in smartcopy.proto, as the decoder hands them out: every
 * field is present (proto3 defaults when absent on the wire: 0, '', false, an empty Buffer, []),
 * nested messages are `null` when absent. 64-bit integers are JS numbers. `bytes` fields are
 * Buffers at runtime; they are views into the received frame, so copy one before keeping it
 * past the life of a frame whose buffer the caller recycles.
 *
 * Keep in step with smartcopy.proto; test/schema.test.ts checks the enums and field lists.
 */

/** Frame types (proto `MsgType`). 0 (MSG_UNKNOWN) is never valid on the wire and is left out. */
export const MsgType = {
  HELLO: 1,
  WELCOME: 2,
  AUTH: 3,
  AUTH_RESULT: 4,
  LIST_REQUEST: 5,
  MANIFEST: 6,
  FILE_BEGIN: 7,
  DATA: 8,
  FILE_END: 9,
  CHUNK_BEGIN: 10,
  CHUNK_END: 11,
  COMMIT: 12,
  RESULT: 13,
  DELETE: 14,
  MKDIR: 15,
  SYMLINK: 16,
  SIGNATURE_REQUEST: 17,
  SIGNATURE: 18,
  DELTA_OPS: 19,
  ERROR: 20,
  STATS: 21,
  BYE: 22,
  FINISH: 23,
  READ_REQUEST: 24,
  PING: 25,
  RESUME_QUERY: 26,
  RESUME_INFO: 27,
  NATIVE_BATCH: 28,
  BATCH_RESULT: 29,
} as const;
export type MsgTypeName = keyof typeof MsgType;
export type MsgTypeValue = (typeof MsgType)[MsgTypeName];

/** proto `EntryType`; the proto's ENTRY_UNKNOWN / SYMLINK_ENTRY prefixes only dodge enum scoping. */
export const EntryType = {
  UNKNOWN: 0,
  FILE: 1,
  DIRECTORY: 2,
  SYMLINK: 3,
  /** devices, fifos, sockets: listed, never transferred */
  OTHER: 4,
} as const;
export type EntryTypeValue = (typeof EntryType)[keyof typeof EntryType];

/** proto `Compression` */
export const Compression = {
  NONE: 0,
  LZ4: 1,
} as const;
export type CompressionValue = (typeof Compression)[keyof typeof Compression];

/** proto `DeltaOpKind` */
export const DeltaOpKind = {
  /** copy `length` bytes from the basis at `basisOffset` */
  COPY: 0,
  /** the next `length` bytes of the payload */
  LITERAL: 1,
} as const;
export type DeltaOpKindValue = (typeof DeltaOpKind)[keyof typeof DeltaOpKind];

// ---- handshake ---------------------------------------------------------------------------------

export interface Hello {
  version: number;
  minVersion: number;
  features: string[];
  clientNonce: Uint8Array;
  sessionId: string;
  streamIndex: number;
  streamCount: number;
  clientVersion: string;
  rootPath: Uint8Array;
}

export interface Welcome {
  version: number;
  features: string[];
  serverNonce: Uint8Array;
  authRequired: boolean;
  readOnly: boolean;
  agentVersion: string;
  sameHost: boolean;
}

export interface Auth {
  mac: Uint8Array;
}

export interface AuthResult {
  ok: boolean;
  serverMac: Uint8Array;
  message: string;
}

// ---- manifests ---------------------------------------------------------------------------------

export interface Entry {
  path: Uint8Array;
  /** an EntryType value; other numbers may arrive from newer peers */
  type: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  mode: number;
  linkTarget: Uint8Array;
  hash: Uint8Array;
  uid: number;
  gid: number;
}

export interface ListRequest {
  requestId: number;
  path: Uint8Array;
  wantHashes: boolean;
  hashAlgo: string;
  recursive: boolean;
}

export interface Manifest {
  requestId: number;
  entries: Entry[];
  last: boolean;
  missing: boolean;
  isFile: boolean;
}

// ---- whole files -------------------------------------------------------------------------------

export interface FileBegin {
  fileId: number;
  entry: Entry | null;
  nativeSource: Uint8Array;
  hashAlgo: string;
  verify: boolean;
  fsync: boolean;
  verifyAlgo: string;
  delta: boolean;
  deltaBlockSize: number;
  deltaBasisSize: number;
}

export interface Data {
  fileId: number;
  offset: number;
  rawLength: number;
  /** a Compression value */
  compression: number;
}

export interface FileEnd {
  fileId: number;
  hash: Uint8Array;
  verifyHash: Uint8Array;
  aborted: boolean;
}

// ---- chunks ------------------------------------------------------------------------------------

export interface ChunkBegin {
  fileId: number;
  entry: Entry | null;
  offset: number;
  length: number;
  nativeSource: Uint8Array;
  hashAlgo: string;
  transferId: string;
}

export interface ChunkEnd {
  fileId: number;
  offset: number;
  hash: Uint8Array;
}

export interface Commit {
  fileId: number;
  entry: Entry | null;
  transferId: string;
  chunkCount: number;
  verifyHash: Uint8Array;
  verifyAlgo: string;
  fsync: boolean;
  chunksHash: Uint8Array;
}

// ---- outcomes and other operations -------------------------------------------------------------

export interface Result {
  fileId: number;
  ok: boolean;
  error: ErrorInfo | null;
  offset: number;
  bytesWritten: number;
  requestId: number;
}

export interface Delete {
  requestId: number;
  path: Uint8Array;
  /** an EntryType value */
  type: number;
}

export interface Mkdir {
  requestId: number;
  entry: Entry | null;
}

export interface Symlink {
  requestId: number;
  entry: Entry | null;
}

export interface Finish {
  requestId: number;
  directories: Entry[];
}

export interface ReadItem {
  fileId: number;
  entry: Entry | null;
  destPath: Uint8Array;
  chunk: boolean;
  offset: number;
  length: number;
  transferId: string;
  delta: boolean;
  deltaSeed: number;
  deltaBlockSize: number;
  deltaStrongLength: number;
  deltaBasisSize: number;
}

export interface ReadRequest {
  requestId: number;
  items: ReadItem[];
  hashAlgo: string;
  verifyAlgo: string;
  compress: boolean;
  bandwidthLimit: number;
}

// ---- many small files on the same host --------------------------------------------------------

export interface NativeBatch {
  firstFileId: number;
  entries: Entry[];
  sources: Uint8Array[];
}

export interface BatchResult {
  firstFileId: number;
  count: number;
  failed: number[];
  errors: ErrorInfo[];
}

// ---- resume ------------------------------------------------------------------------------------

export interface ResumeQuery {
  requestId: number;
  path: Uint8Array;
  transferId: string;
}

export interface ChunkRecordMsg {
  offset: number;
  length: number;
  hash: Uint8Array;
}

export interface ResumeInfo {
  requestId: number;
  chunks: ChunkRecordMsg[];
}

// ---- delta -------------------------------------------------------------------------------------

export interface SignatureRequest {
  fileId: number;
  path: Uint8Array;
  seed: number;
  blockSize: number;
}

export interface Signature {
  fileId: number;
  blockSize: number;
  strongLength: number;
  basisSize: number;
  blockCount: number;
}

export interface DeltaOp {
  /** a DeltaOpKind value */
  kind: number;
  basisOffset: number;
  length: number;
}

export interface DeltaOps {
  fileId: number;
  ops: DeltaOp[];
  /** a Compression value */
  compression: number;
  rawLength: number;
}

// ---- errors, stats, end ------------------------------------------------------------------------

export interface ErrorInfo {
  /** wire code from errors.ts */
  code: number;
  codeName: string;
  message: string;
  path: Uint8Array;
}

/** proto message `Error` (renamed so it does not shadow the JS global) */
export interface ErrorMsg {
  error: ErrorInfo | null;
  fatal: boolean;
}

export interface Stats {
  files: number;
  bytes: number;
  wireBytes: number;
  errors: number;
}

export interface Bye {}

export interface Ping {
  reply: boolean;
  nonce: number;
}

/** The header message carried by each frame type. */
export interface MessageByType {
  [MsgType.HELLO]: Hello;
  [MsgType.WELCOME]: Welcome;
  [MsgType.AUTH]: Auth;
  [MsgType.AUTH_RESULT]: AuthResult;
  [MsgType.LIST_REQUEST]: ListRequest;
  [MsgType.MANIFEST]: Manifest;
  [MsgType.FILE_BEGIN]: FileBegin;
  [MsgType.DATA]: Data;
  [MsgType.FILE_END]: FileEnd;
  [MsgType.CHUNK_BEGIN]: ChunkBegin;
  [MsgType.CHUNK_END]: ChunkEnd;
  [MsgType.COMMIT]: Commit;
  [MsgType.RESULT]: Result;
  [MsgType.DELETE]: Delete;
  [MsgType.MKDIR]: Mkdir;
  [MsgType.SYMLINK]: Symlink;
  [MsgType.SIGNATURE_REQUEST]: SignatureRequest;
  [MsgType.SIGNATURE]: Signature;
  [MsgType.DELTA_OPS]: DeltaOps;
  [MsgType.ERROR]: ErrorMsg;
  [MsgType.STATS]: Stats;
  [MsgType.BYE]: Bye;
  [MsgType.FINISH]: Finish;
  [MsgType.READ_REQUEST]: ReadRequest;
  [MsgType.PING]: Ping;
  [MsgType.RESUME_QUERY]: ResumeQuery;
  [MsgType.RESUME_INFO]: ResumeInfo;
  [MsgType.NATIVE_BATCH]: NativeBatch;
  [MsgType.BATCH_RESULT]: BatchResult;
}

/** proto message name of each frame type's header */
export const MESSAGE_NAMES: { readonly [T in MsgTypeValue]: string } = {
  [MsgType.HELLO]: 'Hello',
  [MsgType.WELCOME]: 'Welcome',
  [MsgType.AUTH]: 'Auth',
  [MsgType.AUTH_RESULT]: 'AuthResult',
  [MsgType.LIST_REQUEST]: 'ListRequest',
  [MsgType.MANIFEST]: 'Manifest',
  [MsgType.FILE_BEGIN]: 'FileBegin',
  [MsgType.DATA]: 'Data',
  [MsgType.FILE_END]: 'FileEnd',
  [MsgType.CHUNK_BEGIN]: 'ChunkBegin',
  [MsgType.CHUNK_END]: 'ChunkEnd',
  [MsgType.COMMIT]: 'Commit',
  [MsgType.RESULT]: 'Result',
  [MsgType.DELETE]: 'Delete',
  [MsgType.MKDIR]: 'Mkdir',
  [MsgType.SYMLINK]: 'Symlink',
  [MsgType.SIGNATURE_REQUEST]: 'SignatureRequest',
  [MsgType.SIGNATURE]: 'Signature',
  [MsgType.DELTA_OPS]: 'DeltaOps',
  [MsgType.ERROR]: 'Error',
  [MsgType.STATS]: 'Stats',
  [MsgType.BYE]: 'Bye',
  [MsgType.FINISH]: 'Finish',
  [MsgType.READ_REQUEST]: 'ReadRequest',
  [MsgType.PING]: 'Ping',
  [MsgType.RESUME_QUERY]: 'ResumeQuery',
  [MsgType.RESUME_INFO]: 'ResumeInfo',
  [MsgType.NATIVE_BATCH]: 'NativeBatch',
  [MsgType.BATCH_RESULT]: 'BatchResult',
};

type InitValue<V> = V extends Uint8Array
  ? Uint8Array
  : V extends readonly (infer U)[]
    ? readonly InitValue<U>[]
    : V extends object
      ? MessageInit<V>
      : V;

/**
 * What the encoder accepts for a message: any subset of its fields (absent, `undefined` and
 * `null` fields are not sent and read back as defaults), nested messages likewise partial.
 */
export type MessageInit<T> = { [K in keyof T]?: InitValue<T[K]> | null | undefined };

/** The header type of frame type T, as accepted by the encoder. */
export type HeaderInit<T extends MsgTypeValue> = MessageInit<MessageByType[T]>;
