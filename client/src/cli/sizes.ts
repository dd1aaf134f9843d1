import { SmartcopyError } from '@smartcopy/protocol';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Parse "4096", "64K", "1.5M", "2GiB", "100MB" (binary units, like rsync). */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new SmartcopyError('SC_ERR_USAGE', `${flag}: cannot read size ${JSON.stringify(text)}; use a number with an optional K, M, G or T suffix`);
  return Math.floor(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
}

/** Parse a rate for --bandwidth-limit: bytes per second, e.g. "100M" = 100 MiB/s. */
export function parseRate(text: string, flag: string): number {
  const v = parseSize(text.replace(/\/s$/i, ''), flag);
  if (v <= 0) throw new SmartcopyError('SC_ERR_USAGE', `${flag} must be greater than zero`);
  return v;
}

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}
