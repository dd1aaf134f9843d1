import fs from 'node:fs';

/*
 * The small-file fast path, run in the copy workers: every step is a plain synchronous syscall,
 * so a batch of files costs one message round trip instead of one promise per syscall (promises
 * were slower than `cp -a` on 20,000 small files, two workers of sync calls about twice as fast;
 * see apply/README.md).
 */

/**
 * Copy a source file (`src`) or write given bytes (`data`) to `part`, finalize, rename. Paths
 * are latin1 strings (one char per byte: lossless for names that are not UTF-8), which cross
 * postMessage far more cheaply than Buffers that are views of larger slabs.
 */
export interface CopyJob {
  src?: string;
  data?: Uint8Array;
  part: string;
  final: string;
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  /** JOB_FSYNC | JOB_CHOWN */
  flags: number;
}

export const JOB_FSYNC = 1;
export const JOB_CHOWN = 2;

export interface JobError {
  code: string | undefined;
  syscall: string | undefined;
  message: string;
  /** 'source': reading the source failed; 'dest': anything on the destination side */
  stage: 'source' | 'dest';
}

/** null: done. `removedDir`: done, and a directory at the final name was replaced. */
export type JobOutcome = null | { removedDir: true } | { error: JobError };

const C = fs.constants;

function buf(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** Create a fresh temp file at `part`; a symlink planted there is removed, never followed. */
export function openPartSync(part: Buffer, flags: number): number {
  try {
    return fs.openSync(part, flags | C.O_CREAT | C.O_TRUNC | C.O_NOFOLLOW, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ELOOP' && code !== 'EMLINK') throw e;
    fs.unlinkSync(part);
    return fs.openSync(part, flags | C.O_CREAT | C.O_EXCL, 0o600);
  }
}

/**
 * rename(part, final); when `final` is a directory (a type change: a file replaces a directory)
 * the directory tree is removed first. Returns true when that happened.
 */
export function renameReplacingSync(part: Buffer, final: Buffer): boolean {
  try {
    fs.renameSync(part, final);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    if (!fs.lstatSync(final).isDirectory()) throw e;
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(part, final);
    return true;
  }
}

function errorOf(e: unknown, stage: 'source' | 'dest'): { error: JobError } {
  const err = e as NodeJS.ErrnoException;
  return { error: { code: err?.code, syscall: err?.syscall, message: String(err?.message ?? e), stage } };
}

export function runJobSync(job: CopyJob, scratch: Buffer): JobOutcome {
  const part = buf(job.part);
  let sfd = -1;
  let dfd = -1;
  let stage: 'source' | 'dest' = 'source';
  try {
    if (job.src) sfd = fs.openSync(buf(job.src), C.O_RDONLY);
    stage = 'dest';
    dfd = openPartSync(part, C.O_WRONLY);
    if (sfd >= 0) {
      // to EOF, not to the size the scan saw: a file that changed is copied as it is now
      let pos = 0;
      for (;;) {
        stage = 'source';
        const n = fs.readSync(sfd, scratch, 0, scratch.length, pos);
        if (n === 0) break;
        stage = 'dest';
        let w = 0;
        while (w < n) w += fs.writeSync(dfd, scratch, w, n - w, pos + w);
        pos += n;
      }
      stage = 'dest';
    } else if (job.data) {
      const d = job.data;
      let w = 0;
      while (w < d.length) w += fs.writeSync(dfd, d, w, d.length - w, w);
    }
    if (job.flags & JOB_FSYNC) fs.fsyncSync(dfd);
    // chown before chmod: chown clears set-id bits
    if (job.flags & JOB_CHOWN) fs.fchownSync(dfd, job.uid, job.gid);
    fs.fchmodSync(dfd, job.mode & 0o7777);
    fs.futimesSync(dfd, job.atime, job.mtime);
    const fd = dfd;
    dfd = -1;
    fs.closeSync(fd);
    return renameReplacingSync(part, buf(job.final)) ? { removedDir: true } : null;
  } catch (e) {
    if (dfd >= 0) {
      try {
        fs.closeSync(dfd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    try {
      fs.unlinkSync(part);
    } catch {
      // nothing there (the source failed first) or the directory is gone: nothing to clean
    }
    return errorOf(e, stage);
  } finally {
    if (sfd >= 0) {
      try {
        fs.closeSync(sfd);
      } catch {
        // a read-only fd: closing cannot lose data
      }
    }
  }
}

/** fsync each directory once so the renames into it are durable. */
export function fsyncDirsSync(dirs: Iterable<Buffer>): Map<string, JobError> {
  const failed = new Map<string, JobError>();
  for (const d of dirs) {
    let fd = -1;
    try {
      fd = fs.openSync(d, C.O_RDONLY | C.O_DIRECTORY);
      fs.fsyncSync(fd);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // some file systems cannot fsync a directory; the files themselves were synced
      if (err.code !== 'EINVAL' && err.code !== 'ENOTSUP') failed.set(d.toString('latin1'), errorOf(e, 'dest').error);
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }
  return failed;
}

export function runBatchSync(jobs: readonly CopyJob[], scratch: Buffer): JobOutcome[] {
  const out = jobs.map((j) => runJobSync(j, scratch));
  const dirs = new Map<string, Buffer>();
  jobs.forEach((j, i) => {
    if (j.flags & JOB_FSYNC && (out[i] === null || (out[i] as { removedDir?: true }).removedDir)) {
      const d = j.final.slice(0, Math.max(1, j.final.lastIndexOf('/')));
      dirs.set(d, buf(d));
    }
  });
  if (dirs.size > 0) {
    const failed = fsyncDirsSync(dirs.values());
    if (failed.size > 0) {
      jobs.forEach((j, i) => {
        const err = failed.get(j.final.slice(0, Math.max(1, j.final.lastIndexOf('/'))));
        if (err && (out[i] === null || 'removedDir' in out[i]!)) out[i] = { error: err };
      });
    }
  }
  return out;
}
