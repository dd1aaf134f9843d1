/**
 * SSH without a remote agent: the transfer runs over SFTP (OpenSSH's sftp-server). The same scan
 * and plan as every other transfer decide what to do; here the plan is carried out with SFTP
 * requests, spread over `--streams` SFTP channels on one SSH connection, several files per
 * channel and several requests per file in flight. Files are written under a `.sc-part` name and
 * renamed over the final name (posix-rename@openssh.com), so a reader never sees half a file.
 *
 * What SFTP cannot do, this mode refuses up front (see checkSftpOptions): delta (needs code on
 * the remote to compute signatures), --checksum (needs remote hashes), --compress.
 * Modification times travel as whole seconds (SFTP v3), so --incremental compares whole seconds.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createHasher, EntryType, SmartcopyError, type Hasher } from '@smartcopy/protocol';
import { Applier, BufferPool, PathJail, TokenBucket, metaOf, partPath, scanTree, type ScanEntry } from '@smartcopy/agent';
import type { Config } from '../../config.js';
import { joinRel, localRoot, sshLease, type RemoteDeps } from '../../endpoints.js';
import { readFilesFrom, scanFilesFrom } from '../../plan/files-from.js';
import { filterListing, fromWire, listingToMap, mapSource, mappingRoot, planOptions, toEntry, type Mapped } from '../../plan/map.js';
import { makePlan, type Plan, type SourceItem } from '../../plan/plan.js';
import type { Accounting, RunEvents } from '../../progress/accounting.js';
import { reportDryRun, reportPlanned, reportScanErrors } from '../../progress/report.js';
import type { Target } from '../../targets.js';
import { scanLocalSource, srcKindOf } from '../push.js';
import { listRemote, RemoteFs } from './remote-fs.js';

type SshTarget = Extract<Target, { kind: 'ssh' }>;
type LocalTarget = Extract<Target, { kind: 'local' }>;

/** Files each SFTP channel works on at once (small files are latency-bound). */
const FILES_PER_CHANNEL = 8;
/** Requests in flight per file: 16 × 256 KiB keeps a fast link busy without big buffers. */
const REQUESTS_PER_FILE = 16;
const REQUEST_SIZE = 256 * 1024;

/** The options this mode cannot honour, refused before anything happens. */
export function checkSftpOptions(cfg: Config): void {
  const needAgent = (what: string, why: string): never => {
    throw new SmartcopyError('SC_ERR_USAGE', `${what} needs a smartcopy agent on the remote (${why}): add --use-agent`);
  };
  if (cfg.delta) needAgent('--delta', 'SFTP can only send whole files');
  if (cfg.checksum) needAgent('--checksum', 'SFTP cannot hash remote files');
  if (cfg.compress) needAgent('--compress', 'SFTP sends data as it is');
}

interface SftpContext {
  cfg: Config;
  acct: Accounting;
  events: RunEvents;
  signal: AbortSignal;
  channels: RemoteFs[];
  pool: BufferPool;
  bucket: TokenBucket | undefined;
}

/** Copy to or from an SSH target over SFTP. */
export async function sftpCopy(cfg: Config, src: Target, dst: Target, acct: Accounting, events: RunEvents, signal: AbortSignal, deps: RemoteDeps): Promise<void> {
  checkSftpOptions(cfg);
  const remote = (src.kind === 'ssh' ? src : dst) as SshTarget;
  const { ssh, release } = await sshLease(remote, cfg, signal, deps.muxPool, deps.notice);
  const channels: RemoteFs[] = [];
  let completed = false;
  try {
    channels.push(new RemoteFs(await ssh.sftp()));
    const base = await remotePath(channels[0]!, remote.path);
    const openMore = async (n: number): Promise<void> => {
      while (channels.length < n) channels.push(new RemoteFs(await ssh.sftp()));
    };
    const ctx: SftpContext = {
      cfg,
      acct,
      events,
      signal,
      channels,
      pool: new BufferPool(REQUEST_SIZE, REQUESTS_PER_FILE * FILES_PER_CHANNEL * cfg.streams),
      bucket: cfg.bandwidthLimit ? new TokenBucket(cfg.bandwidthLimit) : undefined,
    };
    if (src.kind === 'local') await sftpPush(ctx, src, remote, base, openMore);
    else await sftpPull(ctx, remote, base, dst as LocalTarget, openMore);
    completed = true;
  } finally {
    for (const c of channels) c.end();
    release(completed);
  }
}

/** The remote operand as an absolute path: relative paths are under the login directory. */
async function remotePath(fs0: RemoteFs, p: string): Promise<string> {
  const abs = p.startsWith('/') ? p : `${await fs0.realpath('.')}/${p}`;
  const norm = path.posix.normalize(abs);
  return norm.length > 1 ? norm.replace(/\/+$/, '') : norm;
}

const wholeSeconds = (cfg: Config) => ({ ...planOptions(cfg), wholeSecondMtime: true });

async function sftpPush(ctx: SftpContext, src: LocalTarget, remote: SshTarget, base: string, openMore: (n: number) => Promise<void>): Promise<void> {
  const { cfg, acct, events, signal } = ctx;
  const srcAbs = path.resolve(src.path);
  const srcBuf = Buffer.from(srcAbs);
  const filesFrom = cfg.filesFrom ? await readFilesFrom(cfg.filesFrom) : undefined;
  const srcScan = filesFrom ? scanFilesFrom(cfg, srcAbs, filesFrom, signal) : scanLocalSource(cfg, srcAbs, signal);
  srcScan.catch(() => {});
  const srcKind = await srcKindOf(srcAbs, filesFrom !== undefined);
  if (srcKind === 'missing') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} does not exist`, { path: src.path });
  if (srcKind === 'other') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} is not a file, directory or symlink`, { path: src.path });
  const fs0 = ctx.channels[0]!;
  const dstStat = await fs0.statMaybe(base);
  const dstIsDir = dstStat?.isDirectory() ?? false;
  if (srcKind === 'directory' && dstStat && !dstIsDir) {
    throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${remote.display} exists and is not a directory`, { path: remote.display });
  }
  const prefix = Buffer.from(base);
  const root = mappingRoot(srcKind, srcAbs, prefix, dstIsDir, remote.trailingSlash);
  const [srcRes, listing] = await Promise.all([srcScan, listRemote(fs0, root.listRoot.toString(), root.recursive, signal)]);
  if (srcRes.rootKind === 'missing') throw new SmartcopyError('SC_ERR_VANISHED', `source ${src.path} vanished`, { path: src.path });
  reportScanErrors(srcRes.errors, src.path, acct, events);
  for (const e of listing.errors) {
    acct.errors.push(e);
    events.error(e);
  }
  const mapped: Mapped = srcRes.items
    ? { items: srcRes.items.map((it) => ({ ...it, dest: joinRel(prefix, it.dest) })), listRoot: prefix, recursive: true }
    : mapSource(srcRes.rootKind, srcRes.entries, (rel) => (rel.length === 0 ? srcBuf : Buffer.concat([srcBuf, Buffer.from('/'), rel])), srcAbs, prefix, dstIsDir, remote.trailingSlash);
  const plan = makePlan(mapped.items, listingToMap(mapped.listRoot, listing.entries), mapped.listRoot, wholeSeconds(cfg));
  reportPlanned(plan, acct, events, cfg, src.path, remote.display);
  if (cfg.dryRun) return reportDryRun(plan, acct, events);
  await openMore(Math.min(cfg.streams, Math.max(1, Math.ceil(plan.files.length / FILES_PER_CHANNEL))));
  await executeRemote(plan, ctx);
}

async function sftpPull(ctx: SftpContext, remote: SshTarget, base: string, dst: LocalTarget, openMore: (n: number) => Promise<void>): Promise<void> {
  const { cfg, acct, events, signal } = ctx;
  const fs0 = ctx.channels[0]!;
  const { root, prefix: lp } = await localRoot(dst.path);
  const jail = await PathJail.open(root);
  const localPrefix = Buffer.from(lp);
  const applier = new Applier(jail, { fsync: cfg.fsync, preserveOwner: process.getuid?.() === 0 });
  try {
    const localProbe = await scanTree(jail.resolve(localPrefix), { shallow: true, followRootLink: false }, signal);
    const dstIsDir = localProbe.rootKind === 'directory';
    let mapped: Mapped;
    const remoteAbs = (rel: Buffer): Buffer => (rel.length === 0 ? Buffer.from(base) : Buffer.from(`${base === '/' ? '' : base}/${rel.toString()}`));
    if (cfg.filesFrom) {
      if (localProbe.rootKind !== 'missing' && !dstIsDir) throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${dst.path} exists and is not a directory`);
      const items: SourceItem[] = [];
      for (const m of await readFilesFrom(cfg.filesFrom)) {
        const srcRel = m.src.replace(/^\/+|\/+$/g, '');
        const dstRel = Buffer.from(m.dst.replace(/^\/+|\/+$/g, ''));
        const at = srcRel === '' ? base : `${base === '/' ? '' : base}/${srcRel}`;
        const l = await listRemote(fs0, at, true, signal);
        if (l.missing) {
          const err = new SmartcopyError('SC_ERR_NOT_FOUND', `${m.src}: listed in --files-from but does not exist on ${remote.host}`, { path: m.src });
          acct.filesFailed++;
          acct.errors.push(err);
          events.error(err);
          continue;
        }
        for (const e of filterListing(cfg, l.entries.map(fromWire))) {
          const dest = joinRel(dstRel, e.path);
          items.push({ entry: e, src: Buffer.from(e.path.length === 0 ? at : `${at}/${e.path.toString()}`), dest: joinRel(localPrefix, dest), display: dest.toString('utf8') });
        }
      }
      mapped = { items, listRoot: localPrefix, recursive: true };
    } else {
      const probe = await listRemote(fs0, base, false, signal);
      if (probe.missing) throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${remote.display} does not exist`, { path: remote.display });
      const rootType = probe.entries[0]!.type;
      const kind = rootType === EntryType.DIRECTORY ? 'directory' : rootType === EntryType.FILE || rootType === EntryType.SYMLINK ? 'file' : 'other';
      if (kind === 'other') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${remote.display} is not a file, directory or symlink`);
      if (kind === 'directory' && localProbe.rootKind !== 'missing' && !dstIsDir) {
        throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${dst.path} exists and is not a directory`, { path: dst.path });
      }
      const listing = kind === 'directory' ? await listRemote(fs0, base, true, signal) : probe;
      for (const e of listing.errors) {
        acct.filesFailed++;
        acct.errors.push(e);
        events.error(e);
      }
      const entries: ScanEntry[] = filterListing(cfg, listing.entries.map(fromWire));
      mapped = mapSource(kind, entries, remoteAbs, base, localPrefix, dstIsDir, dst.trailingSlash);
    }
    const localList = await scanTree(jail.resolve(mapped.listRoot), { shallow: !mapped.recursive, followRootLink: false, hideParts: true }, signal);
    const plan = makePlan(mapped.items, listingToMap(mapped.listRoot, localList.entries.map(toEntry)), mapped.listRoot, wholeSeconds(cfg));
    reportPlanned(plan, acct, events, cfg, remote.display, dst.path);
    if (cfg.dryRun) return reportDryRun(plan, acct, events);
    await openMore(Math.min(cfg.streams, Math.max(1, Math.ceil(plan.files.length / FILES_PER_CHANNEL))));
    await executeLocal(plan, ctx, applier);
  } finally {
    await applier.discardAll().catch(() => {});
  }
}

// ---- carrying out a plan ---------------------------------------------------------------------

function failer(ctx: SftpContext): { report(e: unknown): void; fileFailed(it: SourceItem, e: unknown): void } {
  const asErr = (e: unknown): SmartcopyError => (e instanceof SmartcopyError ? e : new SmartcopyError('SC_ERR_IO', String(e)));
  return {
    report(e) {
      const err = asErr(e);
      ctx.acct.errors.push(err);
      ctx.events.error(err);
    },
    fileFailed(it, e) {
      const err = asErr(e);
      ctx.acct.filesFailed++;
      ctx.acct.errors.push(err);
      ctx.events.file({ path: it.display, action: 'failed', bytes: 0, error: err });
      ctx.events.error(err);
    },
  };
}

/** Run `work` on every item, `perChannel` at a time on each channel; stops early on abort. */
async function spread<T>(items: readonly T[], ctx: SftpContext, perChannel: number, work: (fs: RemoteFs, item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (fs: RemoteFs): Promise<void> => {
    while (next < items.length && !ctx.signal.aborted) await work(fs, items[next++]!);
  };
  const workers: Array<Promise<void>> = [];
  for (const fs of ctx.channels) for (let i = 0; i < perChannel; i++) workers.push(worker(fs));
  await Promise.all(workers);
}

const newTransferId = (): string => randomBytes(9).toString('base64url');
const remotePart = (final: string): string => partPath(Buffer.from(final), newTransferId()).toString();

/** Push: the plan applied to the remote tree. */
async function executeRemote(plan: Plan, ctx: SftpContext): Promise<void> {
  const { acct, events } = ctx;
  const { report, fileFailed } = failer(ctx);
  const fs0 = ctx.channels[0]!;
  for (const d of plan.deletes) {
    if (ctx.signal.aborted) return;
    try {
      await fs0.removeTree(d.dest.toString());
      if (!d.typeChange) {
        acct.deleted++;
        events.file({ path: d.display, action: 'deleted', bytes: 0 });
      }
    } catch (e) {
      report(e);
    }
  }
  // Parents come before children; a new directory stays writable for us until its metadata is set.
  for (const it of plan.mkdirs) {
    if (ctx.signal.aborted) return;
    try {
      await fs0.mkdir(it.dest.toString(), (it.entry.mode & 0o7777) | 0o700);
      acct.dirsCreated++;
      events.file({ path: it.display, action: 'dir', bytes: 0 });
    } catch (e) {
      report(e);
    }
  }
  await spread(plan.symlinks, ctx, FILES_PER_CHANNEL, async (fs, it) => {
    const final = it.dest.toString();
    const part = remotePart(final);
    try {
      await fs.symlink((it.entry.linkTarget ?? Buffer.alloc(0)).toString(), part);
      await fs.rename(part, final);
      acct.linksCreated++;
      acct.filesCopied++;
      events.file({ path: it.display, action: 'linked', bytes: 0 });
    } catch (e) {
      await fs.unlink(part).catch(() => {});
      fileFailed(it, e);
    }
  });
  await spread(plan.files, ctx, FILES_PER_CHANNEL, async (fs, it) => {
    try {
      await upload(fs, it, ctx);
      acct.filesCopied++;
      events.file({ path: it.display, action: 'copied', bytes: it.entry.size });
    } catch (e) {
      fileFailed(it, e);
    }
  });
  for (const it of plan.dirMeta) {
    if (ctx.signal.aborted) return;
    await fs0.setstat(it.dest.toString(), { mode: it.entry.mode & 0o7777, atime: it.entry.mtimeSec, mtime: it.entry.mtimeSec }).catch(report);
  }
}

/** Pull: the plan applied to the local tree through the same Applier the agent uses. */
async function executeLocal(plan: Plan, ctx: SftpContext, applier: Applier): Promise<void> {
  const { acct, events } = ctx;
  const { report, fileFailed } = failer(ctx);
  for (const d of plan.deletes) {
    if (ctx.signal.aborted) return;
    try {
      await applier.remove(d.dest);
      if (!d.typeChange) {
        acct.deleted++;
        events.file({ path: d.display, action: 'deleted', bytes: 0 });
      }
    } catch (e) {
      report(e);
    }
  }
  for (const it of plan.mkdirs) {
    try {
      await applier.mkdir(it.dest, metaOf(toEntry(it.entry)));
      acct.dirsCreated++;
    } catch (e) {
      report(e);
    }
  }
  for (const it of plan.symlinks) {
    try {
      await applier.symlink(it.dest, it.entry.linkTarget ?? Buffer.alloc(0), metaOf(toEntry(it.entry)));
      acct.filesCopied++;
      events.file({ path: it.display, action: 'linked', bytes: 0 });
    } catch (e) {
      fileFailed(it, e);
    }
  }
  await spread(plan.files, ctx, FILES_PER_CHANNEL, async (fs, it) => {
    try {
      await download(fs, it, ctx, applier);
      acct.filesCopied++;
      events.file({ path: it.display, action: 'copied', bytes: it.entry.size });
    } catch (e) {
      fileFailed(it, e);
    }
  });
  for (const it of plan.dirMeta) {
    if (ctx.signal.aborted) return;
    await applier.setDirMeta(it.dest, metaOf(toEntry(it.entry))).catch(report);
  }
}

/**
 * Requests in flight for one file, in issue order. The first failure is kept and rethrown by
 * drain(); the others are absorbed, so no rejection goes unhandled.
 */
class Window<T> {
  readonly #queue: Array<Promise<T>> = [];
  #error: unknown;
  #failed = false;
  get size(): number {
    return this.#queue.length;
  }
  push(p: Promise<T>): void {
    p.catch((e: unknown) => {
      if (!this.#failed) {
        this.#failed = true;
        this.#error = e;
      }
    });
    this.#queue.push(p);
  }
  /** the oldest request's result */
  async shift(): Promise<T> {
    const p = this.#queue.shift()!;
    try {
      return await p;
    } catch (e) {
      throw this.#failed ? this.#error : e;
    }
  }
  async drain(): Promise<void> {
    await Promise.allSettled(this.#queue.splice(0));
    if (this.#failed) throw this.#error;
  }
}

function changed(display: string): SmartcopyError {
  return new SmartcopyError('SC_ERR_VANISHED', `${display} changed size while it was being copied; run again to copy the new version`, { path: display });
}

async function upload(fs: RemoteFs, it: SourceItem, ctx: SftpContext): Promise<void> {
  const { cfg, acct } = ctx;
  const final = it.dest.toString();
  const part = remotePart(final);
  const hasher: Hasher | undefined = cfg.verify ? await createHasher(cfg.verify) : undefined;
  const fh = await openSource(it.src, it.display);
  let h: Buffer | undefined;
  try {
    h = await fs.open(part, 'wx', 0o600);
    const win = new Window<void>();
    let pos = 0;
    for (;;) {
      if (ctx.signal.aborted) throw new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted');
      const buf = ctx.pool.acquire();
      const { bytesRead: n } = await fh.read(buf, 0, REQUEST_SIZE, pos);
      if (n === 0) {
        ctx.pool.release(buf);
        break;
      }
      hasher?.update(buf.subarray(0, n));
      if (ctx.bucket) await ctx.bucket.take(n, ctx.signal);
      const at = pos;
      win.push(
        fs.write(h, buf, n, at, part).then(
          () => {
            acct.bytesDone += n;
            ctx.pool.release(buf);
          },
          (e: unknown) => {
            ctx.pool.release(buf);
            throw e;
          },
        ),
      );
      pos += n;
      if (win.size >= REQUESTS_PER_FILE) await win.shift();
    }
    await win.drain();
    if (pos !== it.entry.size) throw changed(it.display);
    if (cfg.fsync) await fs.fsync(h, part);
    await fs.fsetstat(h, { mode: it.entry.mode & 0o7777, atime: it.entry.mtimeSec, mtime: it.entry.mtimeSec }, part);
    const handle = h;
    h = undefined;
    await fs.close(handle, part);
    if (hasher) await verifyRemote(fs, part, hasher.digest(), it, ctx);
    await fs.rename(part, final);
  } catch (e) {
    if (h) await fs.close(h, part).catch(() => {});
    await fs.unlink(part).catch(() => {});
    throw e;
  } finally {
    await fh.close().catch(() => {});
  }
}

async function openSource(p: Buffer, display: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SmartcopyError('SC_ERR_VANISHED', `${display} vanished before it could be copied`, { path: display, cause: e });
    throw new SmartcopyError(code === 'EACCES' ? 'SC_ERR_PERMISSION' : 'SC_ERR_IO', `cannot read ${display}: ${code ?? String(e)}`, { path: display, cause: e });
  }
}

/** Read a remote file from the start, in order, with requests pipelined; `each` sees every piece. */
async function readRemote(fs: RemoteFs, p: string, size: number, ctx: SftpContext, each: (buf: Buffer, n: number, at: number) => Promise<void> | void): Promise<void> {
  const h = await fs.open(p, 'r', 0);
  const win = new Window<{ buf: Buffer; n: number; at: number; len: number }>();
  let issued = 0;
  const issue = (): void => {
    const at = issued;
    const len = Math.min(REQUEST_SIZE, size - at);
    const buf = ctx.pool.acquire();
    issued += len;
    win.push(
      fs.read(h, buf, len, at, p).then(
        (n) => ({ buf, n, at, len }),
        (e: unknown) => {
          ctx.pool.release(buf);
          throw e;
        },
      ),
    );
  };
  try {
    while (issued < size && win.size < REQUESTS_PER_FILE) issue();
    let done = 0;
    while (done < size) {
      if (ctx.signal.aborted) throw new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted');
      const r = await win.shift();
      try {
        let n = r.n;
        // a short read (the server may return less than asked): fetch the rest of this range now
        while (n < r.len) {
          const more = await fs.read(h, r.buf.subarray(n), r.len - n, r.at + n, p);
          if (more === 0) throw new SmartcopyError('SC_ERR_VANISHED', `${p} shrank while it was being read; run again`, { path: p });
          n += more;
        }
        await each(r.buf, n, r.at);
      } finally {
        ctx.pool.release(r.buf);
      }
      done += r.len;
      if (issued < size) issue();
    }
    // the file must end where its listing said it ends
    const probe = Buffer.allocUnsafe(1);
    if ((await fs.read(h, probe, 1, size, p)) !== 0) throw new SmartcopyError('SC_ERR_VANISHED', `${p} grew while it was being read; run again`, { path: p });
  } finally {
    await win.drain().catch(() => {});
    await fs.close(h, p).catch(() => {});
  }
}

/** --verify over SFTP: read the uploaded part back and compare its hash with the source's. */
async function verifyRemote(fs: RemoteFs, part: string, expected: Buffer, it: SourceItem, ctx: SftpContext): Promise<void> {
  const hasher = await createHasher(ctx.cfg.verify!);
  await readRemote(fs, part, it.entry.size, ctx, (buf, n) => void hasher.update(buf.subarray(0, n)));
  if (!hasher.digest().equals(expected)) {
    throw new SmartcopyError('SC_ERR_CHECKSUM_MISMATCH', `${it.display}: the copy on the remote does not match the source (--verify); it was not put in place, run again`, { path: it.display });
  }
}

async function download(fs: RemoteFs, it: SourceItem, ctx: SftpContext, applier: Applier): Promise<void> {
  const { cfg, acct } = ctx;
  const hasher: Hasher | undefined = cfg.verify ? await createHasher(cfg.verify) : undefined;
  const part = await applier.createFile(it.dest, metaOf(toEntry(it.entry)), newTransferId());
  try {
    await readRemote(fs, it.src.toString(), it.entry.size, ctx, async (buf, n, at) => {
      if (ctx.bucket) await ctx.bucket.take(n, ctx.signal);
      const piece = buf.subarray(0, n);
      hasher?.update(piece);
      await part.write(piece, at);
      acct.bytesDone += n;
    });
    await part.commit(hasher ? { verify: { algo: cfg.verify!, expected: hasher.digest() } } : {});
  } catch (e) {
    await part.discard().catch(() => {});
    throw e;
  }
}
