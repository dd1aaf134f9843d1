import { hashBuffer } from '@smartcopy/protocol';
import fs from 'node:fs';
import { SmartcopyError } from '@smartcopy/protocol';
import { errnoOf } from '../util/fs-async.js';

/** One verified chunk of a shared part, as recorded in its `.chunks` log. */
export interface ChunkRecord {
  offset: number;
  length: number;
  /** empty when the chunk was sent without a hash */
  hash: Buffer;
}

/** One log line: `offset length hexhash\n` ('-' for no hash). */
export function formatChunkRecord(offset: number, length: number, hash: Uint8Array): string {
  const hex = hash.length > 0 ? Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString('hex') : '-';
  return `${offset} ${length} ${hex}\n`;
}

const LINE = /^(\d{1,16}) (\d{1,16}) (-|(?:[0-9a-f]{2}){1,64})$/;

/**
 * Parse a chunk log. Lines that do not parse are skipped: the last one may be torn by a crash
 * mid-append, and a torn record only means that chunk is sent again.
 */
export function parseChunkLog(text: string): ChunkRecord[] {
  const out: ChunkRecord[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const offset = Number(m[1]);
    const length = Number(m[2]);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) continue;
    out.push({ offset, length, hash: m[3] === '-' ? Buffer.alloc(0) : Buffer.from(m[3]!, 'hex') });
  }
  return out;
}

export async function readChunkLogFile(path: Buffer): Promise<ChunkRecord[]> {
  let text: string;
  try {
    text = await fs.promises.readFile(path, 'latin1');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw e;
  }
  return parseChunkLog(text);
}

/**
 * The records that describe the file: one per offset (a chunk recorded twice, e.g. resent
 * after a resume, counts once; the later record wins), sorted by offset.
 */
export function latestChunks(records: readonly ChunkRecord[]): ChunkRecord[] {
  const byOffset = new Map<number, ChunkRecord>();
  for (const r of records) byOffset.set(r.offset, r);
  return [...byOffset.values()].sort((a, b) => a.offset - b.offset);
}

/**
 * Throw unless the chunks tile [0, size) exactly, with `chunkCount` of them. The error says what
 * is missing; it is retryable because the part stays for a resume.
 */
export function checkCoverage(records: readonly ChunkRecord[], size: number, chunkCount: number, display: string): void {
  const chunks = latestChunks(records);
  let pos = 0;
  let problem: string | undefined;
  for (const c of chunks) {
    if (c.offset > pos) {
      problem = `bytes ${pos}-${c.offset - 1} were never recorded`;
      break;
    }
    if (c.offset < pos) {
      problem = `chunks overlap at byte ${c.offset}`;
      break;
    }
    pos += c.length;
  }
  if (problem === undefined && pos < size) problem = `bytes ${pos}-${size - 1} were never recorded`;
  if (problem === undefined && pos > size) problem = `the recorded chunks run past the end of the file (${pos} > ${size})`;
  if (problem === undefined && chunks.length !== chunkCount) problem = `${chunks.length} chunks were recorded, the sender sent ${chunkCount}`;
  if (problem !== undefined) {
    throw new SmartcopyError(
      'SC_ERR_CHECKSUM_MISMATCH',
      `cannot commit ${JSON.stringify(display)}: ${problem}; the .part file is kept so the transfer can resume`,
      { path: display, retryable: true },
    );
  }
}

/**
 * The hash that stands for a whole chunked file: xxhash64 over every chunk's hash in offset
 * order. Sender and receiver compute it from their own chunk hashes.
 */
export async function chunksHashOf(chunks: ReadonlyArray<{ hash: Uint8Array }>): Promise<Buffer> {
  return hashBuffer('xxhash64', Buffer.concat(chunks.map((c) => c.hash)));
}
