import fs from 'node:fs';
import { PathEscapeError, SmartcopyError, fromSystemError } from '@smartcopy/protocol';
import { errnoOf } from '../util/fs-async.js';
import { SLASH, asBuffer, pathToDisplay } from '../util/paths.js';

const DOT = 0x2e;

/** Mode of directories the jail creates on the way; the session sets the real mode later. */
const NEW_DIR_MODE = 0o755;

/**
 * Confines every path to one root. Relative wire paths are checked syntactically (`resolve`),
 * and before anything is written the ancestors are checked on disk: each must be a real
 * directory, never a symlink, so a link planted inside the tree cannot redirect writes outside
 * it. Verified directories are cached per jail; `invalidate` forgets a subtree after deletes
 * or type changes.
 *
 * Node has no openat(), so a directory swapped for a symlink between the check and the use
 * (by another local user with write access to the tree) is not caught; writes always go to a
 * temporary name opened with O_NOFOLLOW or O_EXCL and are renamed, which never follows a final
 * symlink.
 */
export class PathJail {
  /** realpath of the root */
  readonly root: string;
  readonly rootBuf: Buffer;
  /** rootBuf + '/' (just '/' when the root is '/') */
  private readonly prefix: Buffer;
  /** rootBuf + '/' as a latin1 string, for building absolute paths as strings */
  readonly prefixLatin1: string;
  /**
   * Verified real directories, keyed by relative path in latin1 (lossless for any bytes). A
   * directory is only ever added after all its ancestors, so a missing key means no descendant
   * is cached either.
   */
  private verified = new Set<string>();
  /** checks in progress, shared by concurrent callers */
  private pending = new Map<string, Promise<void>>();

  private constructor(root: string) {
    this.root = root;
    this.rootBuf = Buffer.from(root);
    this.prefix = root === '/' ? this.rootBuf : Buffer.concat([this.rootBuf, Buffer.from('/')]);
    this.prefixLatin1 = this.prefix.toString('latin1');
  }

  /**
   * A jail on the same (already resolved) root with its own, empty cache of verified directories.
   * The cache must not outlive a session: directories removed between sessions would otherwise
   * still count as present.
   */
  fresh(): PathJail {
    return new PathJail(this.root);
  }

  /** Open a jail on `root` (a directory; created with its parents when `create`). */
  static async open(root: string, opts: { create?: boolean } = {}): Promise<PathJail> {
    if (opts.create) {
      try {
        await fs.promises.mkdir(root, { recursive: true, mode: NEW_DIR_MODE });
      } catch (e) {
        throw fromSystemError(e, 'create root directory', root);
      }
    }
    let real: string;
    try {
      real = await fs.promises.realpath(root);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') {
        throw new SmartcopyError('SC_ERR_DEST_INVALID', `root directory ${JSON.stringify(root)} does not exist`, { path: root, cause: e });
      }
      throw fromSystemError(e, 'open root directory', root);
    }
    const st = await fs.promises.stat(real).catch((e: unknown) => {
      throw fromSystemError(e, 'open root directory', root);
    });
    if (!st.isDirectory()) {
      throw new SmartcopyError('SC_ERR_DEST_INVALID', `root ${JSON.stringify(root)} is not a directory`, { path: root });
    }
    return new PathJail(real);
  }

  /**
   * The absolute path of `rel` under the root, checked syntactically only: no leading '/', no
   * '.', '..' or empty segments, no trailing '/', no NUL. '' is the root itself.
   */
  resolve(rel: Uint8Array): Buffer {
    checkRelative(rel);
    if (rel.length === 0) return this.rootBuf;
    const out = Buffer.allocUnsafe(this.prefix.length + rel.length);
    this.prefix.copy(out, 0);
    out.set(rel, this.prefix.length);
    return out;
  }

  /**
   * `resolve(rel)`, after checking on disk that every ancestor of `rel` between the root and its
   * parent is a real directory (not a symlink, not a file). Missing ancestors are created (mode
   * 0o755) when `create`, otherwise they raise SC_ERR_NOT_FOUND. The final component is not
   * looked at. Returns the absolute path of `rel` itself.
   */
  async ensureParent(rel: Uint8Array, opts: { create: boolean }): Promise<Buffer> {
    const abs = this.resolve(rel);
    const key = latin1(rel);
    const last = key.lastIndexOf('/');
    if (last < 0 || this.verified.has(key.slice(0, last))) return abs;
    // walk down from the first ancestor that is not cached yet
    let end = key.indexOf('/');
    while (end >= 0) {
      const dir = key.slice(0, end);
      if (!this.verified.has(dir)) await this.verifyDir(dir, abs.subarray(0, this.prefix.length + end), opts.create);
      end = key.indexOf('/', end + 1);
    }
    return abs;
  }

  /**
   * True when `rel` passes the syntactic checks and every ancestor is already known to be a
   * real directory, i.e. `ensureParent` would not touch the disk. Lets hot paths skip a promise.
   */
  parentKnown(rel: Uint8Array): boolean {
    checkRelative(rel);
    const key = latin1(rel);
    return this.dirKnown(key.slice(0, Math.max(0, key.lastIndexOf('/'))));
  }

  /** True when the directory `dir` (relative, latin1; '' is the root) is cached as verified. */
  dirKnown(dir: string): boolean {
    return dir.length === 0 || this.verified.has(dir);
  }

  /**
   * Open `rel` itself with O_NOFOLLOW added to `flags` after `ensureParent`: a final component
   * that is a symlink is refused with PathEscapeError instead of being written through.
   */
  async openNoFollow(rel: Uint8Array, flags: number, opts: { create?: boolean; mode?: number } = {}): Promise<{ fd: number; abs: Buffer }> {
    const abs = await this.ensureParent(rel, { create: opts.create ?? false });
    try {
      const fd = await new Promise<number>((resolve, reject) => {
        fs.open(abs, flags | fs.constants.O_NOFOLLOW, opts.mode ?? 0o600, (err, fd) => (err ? reject(err) : resolve(fd)));
      });
      return { fd, abs };
    } catch (e) {
      const code = errnoOf(e);
      // Linux reports ELOOP for O_NOFOLLOW on a symlink; FreeBSD reports EMLINK.
      if (code === 'ELOOP' || code === 'EMLINK') {
        throw new PathEscapeError(pathToDisplay(rel), 'it is a symbolic link; refusing to write through it');
      }
      if (code === 'ENOTDIR' && (flags & fs.constants.O_DIRECTORY) !== 0) {
        // with O_DIRECTORY, Linux reports a final symlink as ENOTDIR rather than ELOOP
        const isLink = await fs.promises.lstat(abs).then((st) => st.isSymbolicLink(), () => false);
        if (isLink) throw new PathEscapeError(pathToDisplay(rel), 'it is a symbolic link; refusing to write through it');
        throw new SmartcopyError('SC_ERR_DEST_INVALID', `${JSON.stringify(displayRel(rel))} is not a directory`, { path: displayRel(rel), cause: e });
      }
      throw fromSystemError(e, 'open', displayRel(rel));
    }
  }

  /** Forget cached directory checks for `rel` and everything below it ('' forgets all). */
  invalidate(rel: Uint8Array): void {
    if (rel.length === 0) {
      this.verified.clear();
      return;
    }
    const key = latin1(rel);
    if (!this.verified.delete(key)) return;
    const below = key + '/';
    for (const k of this.verified) if (k.startsWith(below)) this.verified.delete(k);
  }

  private async verifyDir(dir: string, abs: Buffer, create: boolean): Promise<void> {
    const inflight = this.pending.get(dir);
    if (inflight !== undefined) {
      try {
        await inflight;
        return;
      } catch (e) {
        // A concurrent check without `create` may have failed on a missing directory that we
        // are allowed to create: check again ourselves.
        if (!create) throw e;
      }
    }
    const p = checkOrCreateDir(Buffer.from(abs), Buffer.from(dir, 'latin1'), create);
    this.pending.set(dir, p);
    try {
      await p;
      // only under a still-cached parent: an invalidate() that raced with this check must not
      // leave a cached directory below an uncached one (invalidate relies on that)
      const up = dir.lastIndexOf('/');
      if (up < 0 || this.verified.has(dir.slice(0, up))) this.verified.add(dir);
    } finally {
      if (this.pending.get(dir) === p) this.pending.delete(dir);
    }
  }
}

function latin1(b: Uint8Array): string {
  return asBuffer(b).toString('latin1');
}

function displayRel(rel: Uint8Array): string {
  return rel.length === 0 ? '.' : pathToDisplay(rel);
}

async function checkOrCreateDir(abs: Buffer, relDir: Uint8Array, create: boolean): Promise<void> {
  const where = pathToDisplay(relDir);
  let st: fs.Stats;
  try {
    st = await fs.promises.lstat(abs);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') throw fromSystemError(e, 'check directory', where);
    if (!create) {
      throw new SmartcopyError('SC_ERR_NOT_FOUND', `${JSON.stringify(where)}: no such directory`, { path: where, cause: e });
    }
    try {
      await fs.promises.mkdir(abs, { mode: NEW_DIR_MODE });
      return;
    } catch (e2) {
      if (errnoOf(e2) !== 'EEXIST') throw fromSystemError(e2, 'create directory', where);
      // Someone else created it in between: check what it is.
      st = await fs.promises.lstat(abs).catch((e3: unknown) => {
        throw fromSystemError(e3, 'check directory', where);
      });
    }
  }
  if (st.isSymbolicLink()) throw new PathEscapeError(where, 'a parent directory is a symbolic link');
  if (!st.isDirectory()) {
    const code = create ? 'SC_ERR_DEST_INVALID' : 'SC_ERR_NOT_FOUND';
    throw new SmartcopyError(code, `${JSON.stringify(where)} is not a directory`, { path: where });
  }
}

/** Syntactic checks of a relative wire path; throws PathEscapeError. */
export function checkRelative(rel: Uint8Array): void {
  if (rel.length === 0) return;
  const show = (): string => pathToDisplay(rel);
  if (rel[0] === SLASH) throw new PathEscapeError(show(), 'absolute paths are not allowed');
  if (rel.indexOf(0) >= 0) throw new PathEscapeError(show(), 'NUL byte in path');
  let start = 0;
  for (;;) {
    const end = rel.indexOf(SLASH, start);
    const stop = end < 0 ? rel.length : end;
    const len = stop - start;
    if (len === 0) throw new PathEscapeError(show(), end < 0 ? 'trailing "/"' : 'empty path segment');
    if (rel[start] === DOT && (len === 1 || (len === 2 && rel[start + 1] === DOT))) {
      throw new PathEscapeError(show(), `"${len === 1 ? '.' : '..'}" segments are not allowed`);
    }
    if (end < 0) return;
    start = end + 1;
  }
}
