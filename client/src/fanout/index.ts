import { getMaxListeners, setMaxListeners } from 'node:events';
import path from 'node:path';
import { ExitCode, SmartcopyError, fromSystemError } from '@smartcopy/protocol';
import { BlockCache } from '@smartcopy/agent';
import { DEFAULT_RETRIES, type Config } from '../config.js';
import { readFilesFrom, scanFilesFrom } from '../plan/files-from.js';
import { Accounting, type RunEvents } from '../progress/accounting.js';
import { exitCodeOf, type RunDeps, type RunIO } from '../run.js';
import type { Target } from '../targets.js';
import { scanLocalSource, srcKindOf } from '../transfer/push.js';
import { PlanGate } from './gate.js';
import { pushNode, type SharedSource, type SourceListing } from './node.js';
import { HumanFanoutView, JsonFanoutView, type FanoutView } from './render.js';
import { NodeState, fanoutExitCode } from './state.js';

export { parseHostsFile } from './hosts-file.js';
export { formatTable, type FanoutView } from './render.js';
export type { FanoutSummary, NodeResult } from './state.js';
export type { NodePhase } from './node.js';

/**
 * How long nodes that have planned wait for the others before they start sending. Waiting lets
 * every node declare its reads, so each block is read once; a node later than this joins late
 * and re-reads what the others have already sent.
 */
export const PLAN_WAIT_MS = 5_000;
/** First pause before a failed node is tried again; it doubles per attempt up to the maximum. */
export const RETRY_BACKOFF_MS = 500;
export const RETRY_BACKOFF_MAX_MS = 8_000;

/** Failures of the connection to a node rather than of its files: trying again may work. */
const CONNECTION_CODES: ReadonlySet<string> = new Set(['SC_ERR_CONNECT', 'SC_ERR_CONNECTION_CLOSED', 'SC_ERR_TIMEOUT', 'SC_ERR_BUSY']);

/** Whether a node that failed with `err` is worth another attempt. */
export function isRetryable(err: SmartcopyError): boolean {
  return CONNECTION_CODES.has(err.code) || err.retryable;
}

export function retryDelay(failedAttempt: number): number {
  return Math.min(RETRY_BACKOFF_MS * 2 ** Math.max(0, failedAttempt - 1), RETRY_BACKOFF_MAX_MS);
}

/** How a destination is named in progress lines, the table and --json. */
export function nodeName(t: Target): string {
  return t.kind === 'local' ? t.path : t.display;
}

function sameDestinationKey(t: Target): string {
  if (t.kind === 'local') return `local:${path.resolve(t.path)}`;
  const p = path.posix.normalize(`/${t.path}`).replace(/\/+$/, '');
  if (t.kind === 'tcp') return `tcp:${t.host}:${t.port}:${p}`;
  if (t.kind === 'ssh') return `ssh:${t.user ?? ''}@${t.host}:${t.port ?? ''}:${p}`;
  const other = t as { kind: string; display?: string };
  return `${other.kind}:${other.display ?? ''}`;
}

function checkDestinations(cfg: Config, dests: readonly Target[]): void {
  if (dests.length === 0) throw new SmartcopyError('SC_ERR_USAGE', 'no destination');
  const seen = new Map<string, Target>();
  for (const d of dests) {
    if (d.kind === 'ssh' && !cfg.useAgent) {
      throw new SmartcopyError('SC_ERR_USAGE', `${d.display}: fan-out to an SSH destination needs --use-agent (SFTP has no session to feed)`);
    }
    const key = sameDestinationKey(d);
    const prev = seen.get(key);
    if (prev) throw new SmartcopyError('SC_ERR_USAGE', `${nodeName(d)} and ${nodeName(prev)} are the same destination; give each node once`);
    seen.set(key, d);
  }
}

/** Check and list the source once for every node. */
async function shareSource(cfg: Config, src: Extract<Target, { kind: 'local' }>, signal: AbortSignal): Promise<SharedSource> {
  const abs = path.resolve(src.path);
  const filesFrom = cfg.filesFrom ? await readFilesFrom(cfg.filesFrom) : undefined;
  // listed in a worker thread while the nodes connect
  const listing: Promise<SourceListing> = filesFrom ? scanFilesFrom(cfg, abs, filesFrom, signal) : scanLocalSource(cfg, abs, signal);
  listing.catch(() => {});
  const kind = await srcKindOf(abs, filesFrom !== undefined);
  if (kind === 'missing') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} does not exist`, { path: src.path });
  if (kind === 'other') throw new SmartcopyError('SC_ERR_SOURCE_NOT_FOUND', `source ${src.path} is not a file, directory or symlink`, { path: src.path });
  return { display: src.path, abs, buf: Buffer.from(abs), kind, listing };
}

function makeView(cfg: Config, io: RunIO, nodes: readonly NodeState[]): FanoutView {
  if (cfg.json) return new JsonFanoutView(nodes, io.stdout);
  const tty = io.stderr.isTTY === true;
  return new HumanFanoutView(nodes, {
    board: tty && !cfg.quiet,
    plainProgress: cfg.progress && !tty,
    verbose: cfg.verbose,
    quiet: cfg.quiet,
    out: io.stdout,
    err: io.stderr,
  });
}

/** Forwards a session's events and remembers the first sign that the connection was lost. */
function watchConnection(inner: RunEvents): { events: RunEvents; lost(): SmartcopyError | undefined } {
  let lost: SmartcopyError | undefined;
  const note = (e: SmartcopyError | undefined): void => {
    if (e && !lost && CONNECTION_CODES.has(e.code)) lost = e;
  };
  return {
    events: {
      start: (info) => inner.start(info),
      file: (ev) => {
        note(ev.error);
        inner.file(ev);
      },
      error: (e) => {
        note(e);
        inner.error(e);
      },
      tick: () => inner.tick(),
      summary: (s) => inner.summary(s),
    },
    lost: () => lost,
  };
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

interface FanoutRun {
  cfg: Config;
  source: SharedSource;
  cache: BlockCache;
  view: FanoutView;
  signal: AbortSignal;
  deps: RunDeps;
}

/** Push to one node until it succeeds, fails for good, or runs out of retries. Never throws. */
async function runNode(run: FanoutRun, node: NodeState, gate: ReturnType<PlanGate['member']>): Promise<void> {
  const { cfg, view, signal } = run;
  const retries = cfg.retries ?? DEFAULT_RETRIES;
  const deps: RunDeps = { ...run.deps, notice: run.deps.notice ?? ((line) => view.notice(node, line)) };
  for (;;) {
    node.attempts++;
    const acct = new Accounting();
    node.acct = acct;
    node.retryAt = undefined;
    const blocks = run.cache.consumer(node.name);
    const events = view.attempt(node, acct);
    const watch = watchConnection(events);
    let fatal: SmartcopyError | undefined;
    try {
      await pushNode(cfg, run.source, node.target, acct, watch.events, signal, deps, {
        blocks,
        // only a first attempt is waited for; a retry joins whatever is still cached
        planned: () => (node.attempts === 1 ? gate.arrive(signal) : Promise.resolve()),
        phase: (p) => (node.phase = p),
      });
    } catch (e) {
      fatal = e instanceof SmartcopyError ? e : fromSystemError(e, node.name);
      if (signal.aborted) fatal = new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted');
    } finally {
      gate.leave();
      blocks.close();
    }
    node.endAttempt(acct, blocks);
    let code = exitCodeOf(acct, fatal, signal.aborted);
    const why = fatal ?? (code !== 0 ? watch.lost() : undefined);
    if (code !== 0 && !signal.aborted && why && isRetryable(why) && node.attempts <= retries) {
      const delay = retryDelay(node.attempts);
      node.phase = 'retrying';
      node.lastError = why;
      node.retryAt = Date.now() + delay;
      view.retry(node, delay, why);
      await pause(delay, signal);
      if (!signal.aborted) continue;
      code = ExitCode.INTERRUPTED;
    }
    if (fatal) watch.events.error(fatal);
    view.nodeDone(node, node.finish(code, fatal, signal.aborted));
    return;
  }
}

/**
 * Push one local source to many destinations at once (`smartcopy SRC DST1 DST2 ...`,
 * `--hosts-file`). The source is checked and listed once; every node gets its own session and
 * plan (its own listing, so --incremental and --delta work per node), and all of them take file
 * blocks from one BlockCache, so each block is read from disk once however many nodes there are.
 * A node that loses its connection is retried (`cfg.retries`) and then reported; the others never
 * wait for it. Never throws: returns 0 when every node succeeded, else the worst node's exit code.
 */
export async function fanout(
  cfg: Config,
  src: Extract<Target, { kind: 'local' }>,
  dests: Target[],
  io: RunIO,
  signal: AbortSignal,
  deps: RunDeps = {},
): Promise<number> {
  const started = process.hrtime.bigint();
  // every node's streams listen on the one run signal: many nodes are many listeners, not a leak
  const listeners = (dests.length + 1) * (Math.max(cfg.streams, cfg.threads) + 8);
  const limit = getMaxListeners(signal);
  if (limit !== 0 && limit < listeners) setMaxListeners(listeners, signal);
  const nodes = dests.map((d, i) => new NodeState(i, nodeName(d), d));
  const view = makeView(cfg, io, nodes);
  const cache = new BlockCache({ blockSize: cfg.bufferSize });
  const ticker = setInterval(() => view.tick(), 250);
  ticker.unref();
  let fatal: SmartcopyError | undefined;
  try {
    checkDestinations(cfg, dests);
    const source = await shareSource(cfg, src, signal);
    const gate = new PlanGate(nodes.length, PLAN_WAIT_MS);
    const run: FanoutRun = { cfg, source, cache, view, signal, deps };
    await Promise.all(nodes.map((n) => runNode(run, n, gate.member())));
  } catch (e) {
    fatal = e instanceof SmartcopyError ? e : fromSystemError(e, 'smartcopy');
    if (signal.aborted) fatal = new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted');
    view.error(fatal);
  } finally {
    clearInterval(ticker);
  }
  const interrupted = signal.aborted;
  if (interrupted && !fatal) view.error(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted; files not yet complete were not put in place (see README: interrupted runs)'));
  const stats = cache.stats();
  cache.clear();
  // nodes that never ran (the fan-out failed first) are reported with the reason
  for (const n of nodes) if (!n.result) n.finish(fatal ? fatal.exitCode : ExitCode.INTERRUPTED, fatal, interrupted);
  const code = fatal ? fatal.exitCode : fanoutExitCode(nodes);
  view.summary({
    ok: code === 0,
    exitCode: code,
    source: src.path,
    nodes: nodes.map((n) => n.result!),
    cache: stats,
    seconds: Number((Number(process.hrtime.bigint() - started) / 1e9).toFixed(3)),
    dryRun: cfg.dryRun,
    ...(fatal ? { error: { code: fatal.code, message: fatal.message } } : {}),
  });
  return code;
}
