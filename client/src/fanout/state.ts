import { ExitCode, mostSevere, type SmartcopyError } from '@smartcopy/protocol';
import type { BlockCacheStats, BlockConsumer } from '@smartcopy/agent';
import type { Accounting } from '../progress/accounting.js';
import type { Target } from '../targets.js';
import type { NodePhase } from './node.js';

/** One node's line of the final table and of the --json summary. */
export interface NodeResult {
  node: string;
  index: number;
  ok: boolean;
  exitCode: number;
  attempts: number;
  /** of the last attempt: what the node holds now */
  filesTotal: number;
  filesCopied: number;
  filesSkipped: number;
  filesFailed: number;
  /** over all attempts: the work actually done */
  deleted: number;
  bytes: number;
  bytesOnWire: number;
  bytesResumed: number;
  bytesMatched: number;
  bytesLiteral: number;
  /** source blocks this node read from disk itself, was handed, and had to read again */
  blocksRead: number;
  blocksServed: number;
  reReads: number;
  seconds: number;
  error?: { code: string; message: string };
}

/** The end of a fan-out, for the renderers. */
export interface FanoutSummary {
  ok: boolean;
  exitCode: number;
  source: string;
  nodes: NodeResult[];
  cache: BlockCacheStats;
  seconds: number;
  dryRun: boolean;
  /** the fan-out could not start (bad source, bad operands) */
  error?: { code: string; message: string };
}

/** A node during the run: its current attempt and what earlier attempts did. */
export class NodeState {
  phase: NodePhase = 'queued';
  attempts = 0;
  /** the current (or last) attempt's counters */
  acct: Accounting | undefined;
  /** set while waiting to retry: when, and why */
  retryAt: number | undefined;
  lastError: SmartcopyError | undefined;
  result: NodeResult | undefined;
  /** how bad the outcome is, to pick the exit code of the whole run */
  rank = 0;
  private readonly startedAt = process.hrtime.bigint();
  private readonly sums = { deleted: 0, bytes: 0, wire: 0, resumed: 0, matched: 0, literal: 0, blocksRead: 0, blocksServed: 0, reReads: 0 };

  constructor(
    readonly index: number,
    readonly name: string,
    readonly target: Target,
  ) {}

  seconds(): number {
    return Number(process.hrtime.bigint() - this.startedAt) / 1e9;
  }

  /** Add an ended attempt's work to the node's totals. */
  endAttempt(a: Accounting, blocks: BlockConsumer): void {
    const s = this.sums;
    s.deleted += a.deleted;
    s.bytes += a.bytesDone;
    s.wire += a.wireBytes;
    s.resumed += a.bytesResumed;
    s.matched += a.bytesMatched;
    s.literal += a.bytesLiteral;
    s.blocksRead += blocks.blocksRead;
    s.blocksServed += blocks.blocksServed;
    s.reReads += blocks.reReads;
  }

  /** The node is finished (succeeded, or failed after its retries). */
  finish(exitCode: number, fatal: SmartcopyError | undefined, interrupted: boolean): NodeResult {
    const a = this.acct;
    const s = this.sums;
    const err = fatal ?? (exitCode !== 0 && a ? mostSevere(a.errors) : undefined);
    this.rank = rankOf(exitCode, fatal, interrupted);
    this.phase = exitCode === 0 ? 'done' : 'failed';
    this.retryAt = undefined;
    this.result = {
      node: this.name,
      index: this.index,
      ok: exitCode === 0,
      exitCode,
      attempts: this.attempts,
      filesTotal: a?.filesTotal ?? 0,
      filesCopied: a?.filesCopied ?? 0,
      filesSkipped: a?.filesSkipped ?? 0,
      filesFailed: a?.filesFailed ?? 0,
      deleted: s.deleted,
      bytes: s.bytes,
      bytesOnWire: s.wire,
      bytesResumed: s.resumed,
      bytesMatched: s.matched,
      bytesLiteral: s.literal,
      blocksRead: s.blocksRead,
      blocksServed: s.blocksServed,
      reReads: s.reReads,
      seconds: Number(this.seconds().toFixed(3)),
      ...(exitCode !== 0
        ? { error: err ? { code: err.code, message: err.message } : { code: 'SC_ERR_IO', message: `${a?.filesFailed ?? 0} file(s) failed` } }
        : {}),
    };
    return this.result;
  }
}

/**
 * How bad a node's outcome is: an interruption first, then a node that failed outright by the
 * severity of its error, then one where some files failed, then one where files vanished.
 */
function rankOf(exitCode: number, fatal: SmartcopyError | undefined, interrupted: boolean): number {
  if (exitCode === 0) return 0;
  if (interrupted || exitCode === ExitCode.INTERRUPTED) return 1000;
  if (fatal) return 100 + fatal.severity;
  if (exitCode === ExitCode.PARTIAL) return 50;
  if (exitCode === ExitCode.VANISHED) return 20;
  return 10;
}

/** The exit code of a fan-out: 0 only if every node succeeded, else the worst node's code. */
export function fanoutExitCode(nodes: readonly NodeState[]): number {
  let worst: NodeState | undefined;
  for (const n of nodes) if (n.rank > 0 && (!worst || n.rank > worst.rank)) worst = n;
  return worst?.result?.exitCode ?? ExitCode.OK;
}
