import fs from 'node:fs';
import { PipeStream } from './pipe-stream.js';
import type { PipeStreamInit } from './pipe-stream.js';

export { describeStreamError, PipeStream } from './pipe-stream.js';
export type { PipeStreamInit } from './pipe-stream.js';

/**
 * Node never closes fds 0-2 (libuv leaves them open even when their handle closes), so ending
 * process.stdout does not give the peer its EOF when stdout is a pipe — sshd runs commands on
 * pipes — until the process exits. Once everything is flushed, we close fd 1 ourselves and put
 * /dev/null in its place right away, so a later open() cannot land on fd 1 and receive stray
 * writes meant for stdout. A socket (a parent's child_process stdio) gets its EOF from
 * shutdown() and is left alone.
 */
function releaseStdoutFd(): void {
  let isPipe: boolean;
  try {
    isPipe = fs.fstatSync(1).isFIFO();
  } catch {
    return;
  }
  if (!isPipe) return;
  try {
    fs.closeSync(1);
  } catch {
    return;
  }
  try {
    const fd = fs.openSync('/dev/null', 'w');
    // another open() won the race for fd 1: leave it to its owner
    if (fd !== 1) fs.closeSync(fd);
  } catch {
    // fd 1 stays closed: writes to it fail with EBADF, which is harmless
  }
}

class StdioStream extends PipeStream {
  #released = false;

  protected override sendEnd(): void {
    this.writable.end(() => this.#release());
  }

  protected override sendAbort(err: Error): void {
    super.sendAbort(err);
    // the peer learns of the abort from the EOF (and from our exit status)
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    releaseStdoutFd();
  }
}

/**
 * The stream of `smartcopy agent --protocol stdio`: frames in on stdin, out on stdout. Nothing
 * else may write to stdout while it is in use; messages go to stderr. One stream per process:
 * end() or abort() closes stdout for good.
 */
export function stdioStream(init: Partial<PipeStreamInit> = {}): PipeStream {
  return new StdioStream(process.stdin, process.stdout, {
    ...init,
    id: init.id ?? `stdio:${process.pid}`,
    describePeer: init.describePeer ?? 'the peer on stdin/stdout',
  });
}
