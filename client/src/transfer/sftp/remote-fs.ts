import { ConnectionClosedError, EntryType, SmartcopyError, type Entry, type EntryTypeValue } from '@smartcopy/protocol';
import { isPartName } from '@smartcopy/agent';
import type { Attributes, FileEntry, InputAttributes, OpenMode, SFTPWrapper, Stats } from 'ssh2';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** SFTP status codes (draft-ietf-secsh-filexfer-02, section 7). */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

export function entryTypeOf(mode: number): EntryTypeValue {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return EntryType.DIRECTORY;
    case S_IFREG:
      return EntryType.FILE;
    case S_IFLNK:
      return EntryType.SYMLINK;
    default:
      return EntryType.OTHER;
  }
}

/** An SFTP failure as one of our errors: what failed, on which path, and what to do. */
export function sftpError(e: unknown, action: string, path: string): SmartcopyError {
  if (e instanceof SmartcopyError) return e;
  const err = e as Error & { code?: number | string };
  switch (err.code) {
    case SFTP_NO_SUCH_FILE:
      return new SmartcopyError('SC_ERR_NOT_FOUND', `cannot ${action} ${path}: no such file or directory`, { path, cause: e });
    case SFTP_PERMISSION_DENIED:
      return new SmartcopyError('SC_ERR_PERMISSION', `cannot ${action} ${path}: permission denied`, { path, cause: e });
  }
  if (typeof err.code === 'number') {
    // SSH_FX_FAILURE carries no reason (OpenSSH's sftp-server reports a full disk this way too)
    return new SmartcopyError('SC_ERR_IO', `cannot ${action} ${path}: ${err.message} (the server gives no more detail; check free space and permissions there)`, { path, cause: e });
  }
  return new ConnectionClosedError(`cannot ${action} ${path}: the SFTP channel broke (${err.message})`, { cause: e });
}

type Cb<T> = (err: Error | null | undefined, v: T) => void;

/**
 * One SFTP session (one channel) with promise methods. Requests pipeline: any number may be in
 * flight at once, and the server answers them in order.
 */
export class RemoteFs {
  readonly #openssh: boolean;
  constructor(readonly raw: SFTPWrapper, openssh = true) {
    this.#openssh = openssh;
  }

  #call<T>(action: string, path: string, f: (cb: Cb<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      try {
        f((err, v) => (err ? reject(sftpError(err, action, path)) : resolve(v)));
      } catch (e) {
        reject(sftpError(e, action, path));
      }
    });
  }

  lstat(p: string): Promise<Stats> {
    return this.#call('stat', p, (cb) => this.raw.lstat(p, cb));
  }
  stat(p: string): Promise<Stats> {
    return this.#call('stat', p, (cb) => this.raw.stat(p, cb));
  }
  /** lstat, with a missing path as undefined */
  async lstatMaybe(p: string): Promise<Stats | undefined> {
    try {
      return await this.lstat(p);
    } catch (e) {
      if (e instanceof SmartcopyError && e.code === 'SC_ERR_NOT_FOUND') return undefined;
      throw e;
    }
  }
  async statMaybe(p: string): Promise<Stats | undefined> {
    try {
      return await this.stat(p);
    } catch (e) {
      if (e instanceof SmartcopyError && e.code === 'SC_ERR_NOT_FOUND') return undefined;
      throw e;
    }
  }
  readdir(p: string): Promise<FileEntry[]> {
    return this.#call('list', p, (cb) => this.raw.readdir(p, cb));
  }
  readlink(p: string): Promise<string> {
    return this.#call('read link', p, (cb) => this.raw.readlink(p, cb));
  }
  realpath(p: string): Promise<string> {
    return this.#call('resolve', p, (cb) => this.raw.realpath(p, cb));
  }
  mkdir(p: string, mode: number): Promise<void> {
    return this.#call('create directory', p, (cb) => this.raw.mkdir(p, { mode }, (e) => cb(e, undefined)));
  }
  rmdir(p: string): Promise<void> {
    return this.#call('remove directory', p, (cb) => this.raw.rmdir(p, (e) => cb(e, undefined)));
  }
  unlink(p: string): Promise<void> {
    return this.#call('remove', p, (cb) => this.raw.unlink(p, (e) => cb(e, undefined)));
  }
  symlink(target: string, p: string): Promise<void> {
    return this.#call('create link', p, (cb) => this.raw.symlink(target, p, (e) => cb(e, undefined)));
  }
  setstat(p: string, attrs: InputAttributes): Promise<void> {
    return this.#call('set attributes of', p, (cb) => this.raw.setstat(p, attrs, (e) => cb(e, undefined)));
  }
  open(p: string, flags: OpenMode, mode: number): Promise<Buffer> {
    return this.#call('open', p, (cb) => this.raw.open(p, flags, { mode }, cb));
  }
  close(h: Buffer, p: string): Promise<void> {
    return this.#call('close', p, (cb) => this.raw.close(h, (e) => cb(e, undefined)));
  }
  write(h: Buffer, buf: Buffer, len: number, pos: number, p: string): Promise<void> {
    return this.#call('write', p, (cb) => this.raw.write(h, buf, 0, len, pos, (e) => cb(e, undefined)));
  }
  read(h: Buffer, buf: Buffer, len: number, pos: number, p: string): Promise<number> {
    return this.#call('read', p, (cb) => this.raw.read(h, buf, 0, len, pos, (e, n) => cb(e, n)));
  }
  fsetstat(h: Buffer, attrs: InputAttributes, p: string): Promise<void> {
    return this.#call('set attributes of', p, (cb) => this.raw.fsetstat(h, attrs, (e) => cb(e, undefined)));
  }
  fsync(h: Buffer, p: string): Promise<void> {
    return this.#call('fsync', p, (cb) => this.raw.ext_openssh_fsync(h, (e) => cb(e, undefined)));
  }
  /**
   * Rename over an existing name atomically. SFTP v3's RENAME fails when the target exists, so
   * this needs OpenSSH's posix-rename@openssh.com extension.
   */
  rename(from: string, to: string): Promise<void> {
    if (!this.#openssh) {
      return Promise.reject(
        new SmartcopyError('SC_ERR_UNSUPPORTED', `cannot replace ${to} atomically: the SFTP server lacks posix-rename@openssh.com; use --use-agent`, { path: to }),
      );
    }
    return this.#call('rename', to, (cb) => this.raw.ext_openssh_rename(from, to, (e) => cb(e, undefined)));
  }
  end(): void {
    this.raw.end();
  }

  /** Remove a path and, for a directory, everything under it (no link is followed). */
  async removeTree(p: string): Promise<void> {
    const st = await this.lstatMaybe(p);
    if (!st) return;
    if (!st.isDirectory()) return this.unlink(p);
    const children = await this.readdir(p);
    await Promise.all(children.filter((c) => c.filename !== '.' && c.filename !== '..').map((c) => this.removeTree(`${p}/${c.filename}`)));
    await this.rmdir(p);
  }
}

const NO_BYTES = Buffer.alloc(0);

function entryOf(rel: string, attrs: Attributes, linkTarget?: string): Entry {
  return {
    path: Buffer.from(rel),
    type: entryTypeOf(attrs.mode),
    size: attrs.size,
    mtimeSec: attrs.mtime,
    mtimeNsec: 0,
    mode: attrs.mode & 0o7777,
    uid: attrs.uid,
    gid: attrs.gid,
    linkTarget: linkTarget === undefined ? NO_BYTES : Buffer.from(linkTarget),
    hash: NO_BYTES,
  };
}

/** Directories listed at once while walking a remote tree (requests pipeline on one channel). */
const LIST_CONCURRENCY = 16;

/**
 * A remote tree as Entries with paths relative to `root` (the root itself has path ''), the
 * same shape an agent's listing has. Our own `.sc-part` files are hidden. The root is followed
 * when it is a link to a directory, like the agent's listing does.
 */
export interface RemoteListing {
  missing: boolean;
  entries: Entry[];
  /** directories below the root that could not be read (the rest of the tree is listed) */
  errors: SmartcopyError[];
}

export async function listRemote(fs: RemoteFs, root: string, recursive: boolean, signal: AbortSignal): Promise<RemoteListing> {
  const errors: SmartcopyError[] = [];
  const lst = await fs.lstatMaybe(root);
  if (!lst) return { missing: true, entries: [], errors };
  let rootAttrs: Attributes = lst;
  if (lst.isSymbolicLink()) {
    const target = await fs.statMaybe(root);
    if (target?.isDirectory()) rootAttrs = target;
  }
  const rootLink = entryTypeOf(rootAttrs.mode) === EntryType.SYMLINK ? await fs.readlink(root) : undefined;
  const entries: Entry[] = [entryOf('', rootAttrs, rootLink)];
  if (!recursive || entryTypeOf(rootAttrs.mode) !== EntryType.DIRECTORY) return { missing: false, entries, errors };

  const pending: string[] = [''];
  const links: Array<Promise<void>> = [];
  let active = 0;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const pump = (): void => {
      if (failed) return;
      if (signal.aborted) {
        failed = true;
        reject(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted'));
        return;
      }
      while (active < LIST_CONCURRENCY && pending.length > 0) {
        const rel = pending.pop()!;
        active++;
        fs.readdir(rel === '' ? root : `${root}/${rel}`).then(
          (list) => {
            active--;
            for (const c of list) {
              if (c.filename === '.' || c.filename === '..' || isPartName(Buffer.from(c.filename))) continue;
              const childRel = rel === '' ? c.filename : `${rel}/${c.filename}`;
              const type = entryTypeOf(c.attrs.mode);
              if (type === EntryType.SYMLINK) {
                const at = entries.length;
                entries.push(entryOf(childRel, c.attrs));
                links.push(fs.readlink(`${root}/${childRel}`).then((t) => void (entries[at]!.linkTarget = Buffer.from(t))));
              } else entries.push(entryOf(childRel, c.attrs));
              if (type === EntryType.DIRECTORY) pending.push(childRel);
            }
            if (active === 0 && pending.length === 0) resolve();
            else pump();
          },
          (e: unknown) => {
            active--;
            if (rel === '' || !(e instanceof SmartcopyError) || e.code === 'SC_ERR_CONNECTION_CLOSED') {
              failed = true;
              reject(e);
              return;
            }
            errors.push(e);
            if (active === 0 && pending.length === 0) resolve();
            else pump();
          },
        );
      }
    };
    pump();
  });
  await Promise.all(links);
  return { missing: false, entries, errors };
}
