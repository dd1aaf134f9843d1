/**
 * `--hosts-file`: one destination per line, in any form a DST operand takes (`host:PORT:/path`,
 * `tcp://`, `quic://`, `ssh://`, a local path). Blank lines are skipped; `#` starts a comment at
 * the start of a line or after whitespace (a `#` inside a path such as `/data/run#3` is kept).
 */
export function parseHostsFile(text: string): string[] {
  return text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n|\r/)
    .map((l) => l.replace(/(^|\s)#.*$/, '').trim())
    .filter((l) => l !== '');
}
