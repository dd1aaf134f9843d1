/*
 * The weak rolling checksum (rsync's checksum1, over unsigned bytes): for a window x[0..n),
 *   s1 = Σ x[i],  s2 = Σ (n - i)·x[i],  weak = (s2 mod 2^16) << 16 | (s1 mod 2^16)
 * stored as an int32. Sliding the window one byte needs only the byte leaving and the byte
 * entering, which is what makes scanning every offset of the new file affordable.
 */

/**
 * Sums of the window `data[start, end)`: `out[0]` = s1 exact (the plain byte sum, < 2^28 for
 * any block we allow), `out[1]` = s2 wrapped to int32, whose low 16 bits are what counts.
 */
export function windowSums(data: Uint8Array, start: number, end: number, out: Int32Array): void {
  let s1 = 0;
  let s2 = 0;
  let i = start;
  const end4 = end - 3;
  for (; i < end4; i += 4) {
    const a = data[i]!;
    const b = data[i + 1]!;
    const c = data[i + 2]!;
    const d = data[i + 3]!;
    s2 = (s2 + 4 * s1 + 4 * a + 3 * b + 2 * c + d) | 0;
    s1 += a + b + c + d;
  }
  for (; i < end; i++) {
    s1 += data[i]!;
    s2 = (s2 + s1) | 0;
  }
  out[0] = s1;
  out[1] = s2;
}

const scratch = new Int32Array(2);

/** Weak sum of `data[start, end)`, as the int32 `(s2 << 16) | (s1 & 0xffff)`. */
export function weakSum(data: Uint8Array, start: number, end: number): number {
  windowSums(data, start, end, scratch);
  return (scratch[1]! << 16) | (scratch[0]! & 0xffff);
}

/** Multiplier that spreads weak sums over the prefilter and the hash table: bucket = imul(weak, WEAK_MIX) >>> (32 - bits). */
export const WEAK_MIX = 0x9e3779b1 | 0;

