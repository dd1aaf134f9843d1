import fs from 'node:fs';

/*
 * Promise wrappers over the callback fs API for raw fds. fs.promises adds a FileHandle and more
 * bookkeeping per call; on small-file paths that overhead is measurable (see the engine notes).
 */

export function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeOnce(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Write all of buf[off, off+len) at `pos`, looping over short writes. */
export async function writeFullAt(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const n = await writeOnce(fd, buf, off, len, pos);
    off += n;
    pos += n;
    len -= n;
  }
}

/** Read until `len` bytes or EOF; returns the bytes read. */
export async function readFullAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const n = await readAt(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

export function openFd(path: fs.PathLike, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)));
  });
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.close(fd, (err) => (err ? reject(err) : resolve()));
  });
}

/** Close and ignore the outcome: for cleanup paths that already carry an error. */
export function closeQuietly(fd: number): Promise<void> {
  return new Promise((resolve) => fs.close(fd, () => resolve()));
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st)));
  });
}

/** Remove a file; a missing one is fine (cleanup of temp names). */
export async function unlinkIfExists(path: fs.PathLike): Promise<void> {
  try {
    await fs.promises.unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export function errnoOf(e: unknown): string | undefined {
  const c = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}
