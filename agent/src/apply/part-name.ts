import { createHash } from 'node:crypto';
import { SmartcopyError } from '@smartcopy/protocol';

const PART_SUFFIX = Buffer.from('.sc-part');
const CHUNK_LOG_SUFFIX = Buffer.from('.chunks');
const PART_LOG_SUFFIX = Buffer.concat([PART_SUFFIX, CHUNK_LOG_SUFFIX]);
/** NAME_MAX is 255; leave room for the chunk log's '.chunks' after a part name. */
const MAX_PART_NAME = 255 - CHUNK_LOG_SUFFIX.length;
const TRANSFER_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function checkTransferId(transferId: string): void {
  if (!TRANSFER_ID.test(transferId)) {
    throw new SmartcopyError('SC_ERR_PROTOCOL', `invalid transfer id ${JSON.stringify(transferId)}: 1-64 letters, digits, '-' or '_'`);
  }
}

/**
 * The temporary name a file is built under before the rename onto `finalAbs`:
 * `<dir>/.<base>.<transferId>.sc-part`, in the same directory so the rename is atomic. A long
 * base is cut and tagged with a hash of the whole name, so the part name (and its chunk log)
 * stays within NAME_MAX and distinct files keep distinct part names.
 */
export function partPath(finalAbs: Buffer, transferId: string): Buffer {
  return Buffer.from(partPathLatin1(finalAbs.toString('latin1'), transferId), 'latin1');
}

/** `partPath` on paths held as latin1 strings (one char per byte, so lengths are byte counts). */
export function partPathLatin1(final: string, transferId: string): string {
  checkTransferId(transferId);
  const slash = final.lastIndexOf('/');
  let base = final.slice(slash + 1);
  const suffix = `.${transferId}.sc-part`;
  const room = MAX_PART_NAME - 1 - suffix.length;
  if (base.length > room) {
    const tag = createHash('sha256').update(base, 'latin1').digest('hex').slice(0, 8);
    base = `${base.slice(0, room - 9)}~${tag}`;
  }
  return `${final.slice(0, slash + 1)}.${base}${suffix}`;
}

/** The sidecar log of verified chunks of a shared part. */
export function chunkLogPath(part: Buffer): Buffer {
  return Buffer.concat([part, CHUNK_LOG_SUFFIX]);
}

function endsWith(b: Uint8Array, suffix: Buffer): boolean {
  if (b.length < suffix.length) return false;
  const off = b.length - suffix.length;
  for (let i = 0; i < suffix.length; i++) if (b[off + i] !== suffix[i]) return false;
  return true;
}

/** True for a name (one component) that is one of our part files or chunk logs. */
export function isPartName(name: Uint8Array): boolean {
  return name[0] === 0x2e && (endsWith(name, PART_SUFFIX) || endsWith(name, PART_LOG_SUFFIX));
}
