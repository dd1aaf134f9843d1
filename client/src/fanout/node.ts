import { EntryType, SmartcopyError } from '@smartcopy/protocol';
import { DELTA_MIN_SIZE, type BlockConsumer, type ScanResult } from '@smartcopy/agent';
import type { Config } from '../config.js';
import { joinRel, openEndpoint, openLocal, type Endpoint } from '../endpoints.js';
import { listingToMap, mapSource, mappingRoot, planOptions, type Mapped } from '../plan/map.js';
import { makePlan, type SourceItem } from '../plan/plan.js';
import type { Accounting, RunEvents } from '../progress/accounting.js';
import { reportDryRun, reportPlanned, reportScanErrors } from '../progress/report.js';
import type { RunDeps } from '../run.js';
import { ClientStream } from '../session/client-stream.js';
import { newSessionId, openChannel, recycleChannel } from '../session/connect.js';
import type { Target } from '../targets.js';
import { executePlan } from '../transfer/execute.js';
import { pushExecution } from '../transfer/push.js';
import { finishStreams, openMoreStreams, wireBytes } from '../transfer/streams.js';

export type SourceListing = ScanResult & { items?: SourceItem[] };

/** The source of a fan-out: checked and listed once, shared by every node's session. */
export interface SharedSource {
  /** the operand as the user gave it */
  display: string;
  abs: string;
  buf: Buffer;
  /** 'directory' or 'file' (a missing source stops the fan-out before any node starts) */
  kind: string;
  listing: Promise<SourceListing>;
}

export type NodePhase = 'queued' | 'connecting' | 'planning' | 'waiting' | 'sending' | 'finishing' | 'retrying' | 'done' | 'failed';

/** What one attempt at one node shares with the orchestrator. */
export interface AttemptHooks {
  /** this attempt's view of the shared block cache */
  blocks: BlockConsumer;
  /** resolves when the node may start sending: the other nodes have declared their plans too */
  planned(): Promise<void>;
  phase(p: NodePhase): void;
}

/**
 * One push of the shared source to one node: the same session as `push()`, except that the
 * source is not scanned again and file blocks come from the fan-out's BlockCache. The node gets
 * its own plan from its own listing, so --incremental and --delta work per node.
 */
export async function pushNode(
  cfg: Config,
  source: SharedSource,
  dst: Target,
  acct: Accounting,
  events: RunEvents,
  signal: AbortSignal,
  deps: RunDeps,
  hooks: AttemptHooks,
): Promise<void> {
  let endpoint: Endpoint | undefined;
  let completed = false;
  const streams: ClientStream[] = [];
  try {
    hooks.phase('connecting');
    endpoint = dst.kind === 'local' ? await openLocal(dst.path) : await openEndpoint(dst, cfg, signal, deps);
    const count = endpoint.conn.features.sameHost ? cfg.threads : cfg.streams;
    const hs = { sessionId: newSessionId(), count, token: cfg.token, fsync: cfg.fsync, signal };
    const first = await openChannel(endpoint.conn, { ...hs, index: 0 });
    const control = new ClientStream(first.ch, 0, (e) => events.error(e));
    streams.push(control);

    hooks.phase('planning');
    const probe = await control.list(endpoint.prefix, { recursive: false });
    const dstIsDir = !probe.missing && probe.entries[0]?.type === EntryType.DIRECTORY;
    if (source.kind === 'directory' && !probe.missing && !dstIsDir) {
      throw new SmartcopyError('SC_ERR_DEST_INVALID', `destination ${endpoint.display} exists and is not a directory`, { path: endpoint.display });
    }
    const prefix = endpoint.prefix;
    const root = mappingRoot(source.kind, source.abs, prefix, dstIsDir, dst.trailingSlash);
    const [srcRes, listing] = await Promise.all([
      source.listing,
      control.list(root.listRoot, { recursive: root.recursive, hashAlgo: cfg.checksum ? 'xxhash64' : undefined }),
    ]);
    if (srcRes.rootKind === 'missing') throw new SmartcopyError('SC_ERR_VANISHED', `source ${source.display} vanished`, { path: source.display });
    reportScanErrors(srcRes.errors, source.display, acct, events);
    const slash = Buffer.from('/');
    const mapped: Mapped = srcRes.items
      ? { items: srcRes.items.map((it) => ({ ...it, dest: joinRel(prefix, it.dest) })), listRoot: prefix, recursive: true }
      : mapSource(srcRes.rootKind, srcRes.entries, (rel) => (rel.length === 0 ? source.buf : Buffer.concat([source.buf, slash, rel])), source.abs, prefix, dstIsDir, dst.trailingSlash);
    const plan = makePlan(mapped.items, listingToMap(mapped.listRoot, listing.entries), mapped.listRoot, planOptions(cfg));
    reportPlanned(plan, acct, events, cfg, source.display, endpoint.display);
    if (cfg.dryRun) {
      reportDryRun(plan, acct, events);
      if (await control.bye({ keep: endpoint.recycle })) recycleChannel(endpoint.conn, control.ch);
      completed = true;
      return;
    }

    await openMoreStreams(endpoint.conn, hs, Math.min(count, Math.max(1, plan.files.length)), streams, events);
    const exec = pushExecution(cfg, first.welcome, endpoint.conn, streams, acct, events, signal, hooks.blocks);
    // Declare what this node will read before anyone reads: a block is then kept until every
    // node that sends its file has taken it. Delta files are read against each node's own basis.
    if (!exec.send.native) {
      for (const it of plan.files) if (!(exec.delta && it.basisSize && it.entry.size >= DELTA_MIN_SIZE)) hooks.blocks.expect(it.src, it.entry.size);
    }
    hooks.phase('waiting');
    await hooks.planned();
    hooks.phase('sending');
    await executePlan(plan, exec);
    hooks.phase('finishing');
    if (!endpoint.conn.features.sameHost) acct.wireBytes = wireBytes(streams);
    acct.wireProbe = undefined;
    await finishStreams(streams, plan.files.length + plan.mkdirs.length > 0, signal, endpoint.recycle ? endpoint.conn : undefined);
    completed = true;
  } finally {
    if (acct.wireProbe) {
      acct.wireBytes = acct.wireProbe();
      acct.wireProbe = undefined;
    }
    if (signal.aborted || !completed) for (const s of streams) s.ch.abort();
    await endpoint?.close(completed);
  }
}
