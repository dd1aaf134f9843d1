/*
 * Paths travel as bytes: names need not be UTF-8, and Node's fs accepts Buffer paths, so the
 * exact bytes survive from the wire to the syscall. Strings are only for messages.
 */

export const SLASH = 0x2f;

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** `base` + '/' + `rel` as one Buffer; `rel` empty gives `base` itself. */
export function joinPath(base: Buffer, rel: Uint8Array): Buffer {
  if (rel.length === 0) return base;
  if (base.length > 0 && base[base.length - 1] === SLASH) return Buffer.concat([base, rel]);
  const out = Buffer.allocUnsafe(base.length + 1 + rel.length);
  base.copy(out, 0);
  out[base.length] = SLASH;
  out.set(rel, base.length + 1);
  return out;
}

/** A path for humans: UTF-8 with U+FFFD for bytes that are not. */
export function pathToDisplay(p: Uint8Array | string): string {
  if (typeof p === 'string') return p;
  return asBuffer(p).toString('utf8');
}

/** The last component (a view, no copy). */
export function baseName(p: Buffer): Buffer {
  const i = p.lastIndexOf(SLASH);
  return i < 0 ? p : p.subarray(i + 1);
}

/** Everything before the last '/' (a view); '/' for a child of the root, '' for a bare name. */
export function dirName(p: Buffer): Buffer {
  const i = p.lastIndexOf(SLASH);
  if (i < 0) return p.subarray(0, 0);
  if (i === 0) return p.subarray(0, 1);
  return p.subarray(0, i);
}

/** Stable map key for a byte path (latin1 maps every byte to one code unit, so it is lossless). */
export function pathKey(p: Uint8Array): string {
  return asBuffer(p).toString('latin1');
}

export { asBuffer };
