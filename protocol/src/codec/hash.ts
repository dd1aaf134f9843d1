import { createHash } from 'node:crypto';
import { createBLAKE3, createXXHash3, type IHasher } from 'hash-wasm';
import xxhashWasm from 'xxhash-wasm';
import { SmartcopyError } from '../errors.js';

/** Content hash algorithms a peer may name in FileBegin/ChunkBegin/ListRequest `hash_algo`. */
export type HashAlgo = 'xxhash3' | 'xxhash64' | 'blake3' | 'sha256';

/** In order of preference for plain content checks (fastest first). */
export const HASH_ALGOS: readonly HashAlgo[] = Object.freeze(['xxhash3', 'xxhash64', 'blake3', 'sha256'] as const);

/** Digest length in bytes of each algorithm. */
export const HASH_LENGTHS: Readonly<Record<HashAlgo, number>> = Object.freeze({
  xxhash3: 8,
  xxhash64: 8,
  blake3: 32,
  sha256: 32,
});

export function isHashAlgo(name: string): name is HashAlgo {
  return (HASH_ALGOS as readonly string[]).includes(name);
}

/**
 * An incremental hash. Digests are canonical big-endian bytes (the order `xxhsum`, `b3sum` and
 * `sha256sum` print). A hasher is finished by `digest()` and must not be used afterwards: its
 * engine goes back to a free-list for the next file.
 */
export interface Hasher {
  readonly algo: HashAlgo;
  update(data: Uint8Array): Hasher;
  digest(): Buffer<ArrayBuffer>;
}

type XXHashAPI = Awaited<ReturnType<typeof xxhashWasm>>;
let xxhashApi: XXHashAPI | undefined;
let xxhashLoading: Promise<XXHashAPI> | undefined;

function loadXXHash(): Promise<XXHashAPI> {
  xxhashLoading ??= xxhashWasm().then((api) => (xxhashApi = api));
  return xxhashLoading;
}

/** Load the WebAssembly codecs once; `xxh64()` needs it. Safe to call any number of times. */
export async function initCodecs(): Promise<void> {
  await loadXXHash();
}

const U64_MASK = (1n << 64n) - 1n;

function u64be(v: bigint): Buffer<ArrayBuffer> {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(v & U64_MASK, 0);
  return out;
}

/** One-shot xxhash64 (8 bytes, big-endian), synchronous, for chunk and block checksums. Needs `await initCodecs()` first. */
export function xxh64(data: Uint8Array, seed: bigint | number = 0n): Buffer<ArrayBuffer> {
  if (xxhashApi === undefined) {
    throw new SmartcopyError('SC_ERR_INTERNAL', 'xxh64() called before initCodecs() finished');
  }
  return u64be(xxhashApi.h64Raw(data, BigInt(seed)));
}

function finishedError(algo: HashAlgo): SmartcopyError {
  return new SmartcopyError('SC_ERR_INTERNAL', `${algo} hasher used after digest()`);
}

/*
 * hash-wasm gives every hasher its own WebAssembly instance, which takes far longer to create
 * than a small file takes to hash; finished instances are re-initialised and reused instead.
 */
const FREE_LIST_CAP = 16;
const freeLists: Partial<Record<HashAlgo, IHasher[]>> = {};

class WasmHasher implements Hasher {
  private engine: IHasher | null;
  constructor(
    readonly algo: HashAlgo,
    engine: IHasher,
  ) {
    this.engine = engine;
  }
  update(data: Uint8Array): Hasher {
    if (this.engine === null) throw finishedError(this.algo);
    this.engine.update(data);
    return this;
  }
  digest(): Buffer<ArrayBuffer> {
    const engine = this.engine;
    if (engine === null) throw finishedError(this.algo);
    this.engine = null;
    const d = engine.digest('binary');
    const list = (freeLists[this.algo] ??= []);
    if (list.length < FREE_LIST_CAP) list.push(engine);
    // hash-wasm returns a fresh copy, never a view of its wasm memory
    return Buffer.from(d.buffer as ArrayBuffer, d.byteOffset, d.byteLength);
  }
}

class XXH64Hasher implements Hasher {
  readonly algo = 'xxhash64' as const;
  private state: ReturnType<XXHashAPI['create64']> | null;
  constructor(api: XXHashAPI) {
    this.state = api.create64(0n);
  }
  update(data: Uint8Array): Hasher {
    if (this.state === null) throw finishedError(this.algo);
    this.state.update(data);
    return this;
  }
  digest(): Buffer<ArrayBuffer> {
    if (this.state === null) throw finishedError(this.algo);
    const v = this.state.digest();
    this.state = null;
    return u64be(v);
  }
}

class Sha256Hasher implements Hasher {
  readonly algo = 'sha256' as const;
  private h: ReturnType<typeof createHash> | null = createHash('sha256');
  update(data: Uint8Array): Hasher {
    if (this.h === null) throw finishedError(this.algo);
    this.h.update(data);
    return this;
  }
  digest(): Buffer<ArrayBuffer> {
    if (this.h === null) throw finishedError(this.algo);
    const d = this.h.digest();
    this.h = null;
    return d;
  }
}

/** A fresh hasher for `algo`. Cheap after the first call per algorithm (engines are reused). */
export async function createHasher(algo: HashAlgo): Promise<Hasher> {
  switch (algo) {
    case 'xxhash64':
      return new XXH64Hasher(xxhashApi ?? (await loadXXHash()));
    case 'sha256':
      return new Sha256Hasher();
    case 'xxhash3':
    case 'blake3': {
      const engine = freeLists[algo]?.pop() ?? (await (algo === 'xxhash3' ? createXXHash3() : createBLAKE3()));
      engine.init();
      return new WasmHasher(algo, engine);
    }
    default:
      throw new SmartcopyError('SC_ERR_UNSUPPORTED', `unknown hash algorithm ${JSON.stringify(algo)} (known: ${HASH_ALGOS.join(', ')})`);
  }
}

/** Hash one buffer in one go. */
export async function hashBuffer(algo: HashAlgo, data: Uint8Array): Promise<Buffer<ArrayBuffer>> {
  if (algo === 'xxhash64') return u64be((xxhashApi ?? (await loadXXHash())).h64Raw(data, 0n));
  if (algo === 'sha256') return createHash('sha256').update(data).digest();
  return (await createHasher(algo)).update(data).digest();
}
