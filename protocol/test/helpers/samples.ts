import { MsgType, type Entry, type MessageByType, type MsgTypeValue } from '../../src/index.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

export function entry(path: string, over: Partial<Entry> = {}): Entry {
  return {
    path: b(path),
    type: 1,
    size: 2 ** 40 + 7,
    mtimeSec: -86400 * 365,
    mtimeNsec: 999_999_999,
    mode: 0o644,
    linkTarget: b('../target'),
    hash: Buffer.from('0011223344556677', 'hex'),
    uid: 1000,
    gid: 1001,
    ...over,
  };
}

/** One header per frame type with every field set to a non-default value. */
export const samples: { [T in MsgTypeValue]: MessageByType[T] } = {
  [MsgType.HELLO]: {
    version: 3,
    minVersion: 1,
    features: ['lz4', 'delta'],
    clientNonce: b('nonce-c'),
    sessionId: 'sess-1',
    streamIndex: 2,
    streamCount: 4,
    clientVersion: '0.1.0',
    rootPath: b('dir/sub'),
  },
  [MsgType.WELCOME]: {
    version: 1,
    features: ['lz4'],
    serverNonce: b('nonce-s'),
    authRequired: true,
    readOnly: true,
    agentVersion: '0.1.0',
    sameHost: true,
  },
  [MsgType.AUTH]: { mac: Buffer.alloc(32, 0xab) },
  [MsgType.AUTH_RESULT]: { ok: true, serverMac: Buffer.alloc(32, 0xcd), message: 'welcome' },
  [MsgType.LIST_REQUEST]: { requestId: 9, path: b('a/b'), wantHashes: true, hashAlgo: 'xxhash3', recursive: true },
  [MsgType.MANIFEST]: {
    requestId: 9,
    entries: [entry('a'), entry('a/', { path: Buffer.from([0x61, 0x2f, 0xff, 0xfe]), type: 2, size: 0 }), entry('l', { type: 3 })],
    last: true,
    missing: true,
    isFile: true,
  },
  [MsgType.FILE_BEGIN]: {
    fileId: 77,
    entry: entry('f.bin'),
    nativeSource: b('/src/f.bin'),
    hashAlgo: 'blake3',
    verify: true,
    fsync: true,
    verifyAlgo: 'sha256',
    delta: true,
    deltaBlockSize: 16384,
    deltaBasisSize: 2 ** 40,
  },
  [MsgType.DATA]: { fileId: 77, offset: 2 ** 45 + 1, rawLength: 1 << 20, compression: 1 },
  [MsgType.FILE_END]: { fileId: 77, hash: Buffer.alloc(8, 1), verifyHash: Buffer.alloc(32, 2), aborted: true },
  [MsgType.CHUNK_BEGIN]: {
    fileId: 5,
    entry: entry('big'),
    offset: 2 ** 34,
    length: 1 << 24,
    nativeSource: b('/src/big'),
    hashAlgo: 'xxhash64',
    transferId: 'tx-1',
  },
  [MsgType.CHUNK_END]: { fileId: 5, offset: 2 ** 34, hash: Buffer.alloc(8, 3) },
  [MsgType.COMMIT]: {
    fileId: 5,
    entry: entry('big'),
    transferId: 'tx-1',
    chunkCount: 12,
    verifyHash: Buffer.alloc(32, 4),
    verifyAlgo: 'sha256',
    fsync: true,
    chunksHash: Buffer.alloc(8, 9),
  },
  [MsgType.RESULT]: {
    fileId: 5,
    ok: true,
    error: { code: 11, codeName: 'SC_ERR_PATH_ESCAPE', message: 'nope', path: b('../x') },
    offset: 2 ** 33,
    bytesWritten: 2 ** 41,
    requestId: 3,
  },
  [MsgType.DELETE]: { requestId: 4, path: b('old'), type: 2 },
  [MsgType.MKDIR]: { requestId: 5, entry: entry('d', { type: 2 }) },
  [MsgType.SYMLINK]: { requestId: 6, entry: entry('s', { type: 3 }) },
  [MsgType.SIGNATURE_REQUEST]: { fileId: 8, path: b('basis'), seed: 4242, blockSize: 0 },
  [MsgType.SIGNATURE]: { fileId: 8, blockSize: 32768, strongLength: 8, basisSize: 2 ** 40, blockCount: 33554432 },
  [MsgType.DELTA_OPS]: {
    fileId: 8,
    ops: [
      { kind: 0, basisOffset: 2 ** 36, length: 32768 },
      { kind: 1, basisOffset: 1, length: 10 },
    ],
    compression: 1,
    rawLength: 10,
  },
  [MsgType.ERROR]: {
    error: { code: 5, codeName: 'SC_ERR_IO', message: 'disk on fire', path: b('p') },
    fatal: true,
  },
  [MsgType.STATS]: { files: 20000, bytes: 2 ** 50, wireBytes: 2 ** 49, errors: 2 },
  [MsgType.BYE]: {},
  [MsgType.FINISH]: { requestId: 10, directories: [entry('d/e', { type: 2 }), entry('d', { type: 2 })] },
  [MsgType.READ_REQUEST]: {
    requestId: 11,
    items: [
      { fileId: 1, entry: entry('x'), destPath: b('dst/x'), chunk: false, offset: 0, length: 0, transferId: '', delta: true, deltaSeed: 99, deltaBlockSize: 700, deltaStrongLength: 3, deltaBasisSize: 123456 },
      { fileId: 2, entry: entry('y'), destPath: b('dst/y'), chunk: true, offset: 2 ** 33, length: 1 << 25, transferId: 'c123', delta: false, deltaSeed: 0, deltaBlockSize: 0, deltaStrongLength: 0, deltaBasisSize: 0 },
    ],
    hashAlgo: 'xxhash64',
    verifyAlgo: 'blake3',
    compress: true,
    bandwidthLimit: 100 * 1024 * 1024,
  },
  [MsgType.PING]: { reply: true, nonce: 2 ** 52 + 1 },
  [MsgType.RESUME_QUERY]: { requestId: 3, path: b('big/disk.img'), transferId: 'c1x2' },
  [MsgType.NATIVE_BATCH]: { firstFileId: 7, entries: [entry('a'), entry('b/c')], sources: [b('/src/a'), b('/src/b/c')] },
  [MsgType.BATCH_RESULT]: {
    firstFileId: 7,
    count: 2,
    failed: [1],
    errors: [{ code: 7, codeName: 'SC_ERR_PERMISSION', message: 'permission denied', path: b('b/c') }],
  },
  [MsgType.RESUME_INFO]: {
    requestId: 3,
    chunks: [
      { offset: 0, length: 1 << 25, hash: Buffer.alloc(8, 1) },
      { offset: 2 ** 40, length: 5, hash: Buffer.alloc(0) },
    ],
  },
};

/** Turn decoded messages (protobufjs instances, Buffers) into plain comparable values. */
export function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).map((k) => [k, plain((v as Record<string, unknown>)[k])]));
  }
  return v;
}

/** Deterministic PRNG so failures reproduce (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(next: () => number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 256) | 0;
  return out;
}
