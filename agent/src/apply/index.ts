export {
  Applier,
  SMALL_FILE_MAX,
  SMALL_FILE_BUDGET,
  NATIVE_BATCH_MAX,
  type PartFile,
  type SharedPart,
  type NativeBatchItem,
} from './applier.js';
export type { FileMeta, VerifySpec, ApplierOptions } from './types.js';
export { partPath, isPartName, chunkLogPath } from './part-name.js';
export { parseChunkLog, formatChunkRecord, chunksHashOf, latestChunks, type ChunkRecord } from './chunk-log.js';
export { CopyPool, defaultCopyPool, DEFAULT_COPY_WORKERS, MAX_COPY_BATCH, type CopyPoolOptions } from './copy-pool.js';
