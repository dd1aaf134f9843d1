import { ProtocolError } from '../errors.js';
import { DeltaOpKind, type DeltaOp } from '../schema/messages.js';

/** One step of rebuilding the new file: copy a basis range, or write literal bytes. */
export type PatchStep =
  | { kind: 'copy'; basisOffset: number; outOffset: number; length: number }
  | { kind: 'literal'; outOffset: number; data: Uint8Array };

export interface PatchLimits {
  /** size of the basis the signature was made from */
  basisSize: number;
  /** the signature's block size: COPY ops must then start on a block and cover whole blocks */
  blockSize?: number;
  /** size the new file must have (from the sender's entry), checked as ops arrive and at finish */
  expectedSize?: number;
}

function bad(why: string): never {
  throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta ops: ${why}`);
}

/**
 * Receiver side, pure part: turns DeltaOps batches into positional copy/write steps, checking
 * every op against the basis (copies inside it and block-aligned) and the batch's literal bytes.
 * The caller does the I/O: copy `basisOffset → outOffset` from the basis file, write literals.
 */
export class PatchPlanner {
  private out = 0;
  private finished = false;

  constructor(readonly limits: PatchLimits) {
    const { basisSize, blockSize, expectedSize } = limits;
    if (!Number.isSafeInteger(basisSize) || basisSize < 0) bad(`basis size ${basisSize}`);
    if (blockSize !== undefined && (!Number.isSafeInteger(blockSize) || blockSize < 1)) bad(`block size ${blockSize}`);
    if (expectedSize !== undefined && (!Number.isSafeInteger(expectedSize) || expectedSize < 0)) bad(`expected size ${expectedSize}`);
  }

  /** Bytes of the new file planned so far (the next step's outOffset). */
  get outOffset(): number {
    return this.out;
  }

  /**
   * Steps for one batch. `literals` is the batch's payload after decompression; literal steps
   * are views into it.
   */
  plan(ops: readonly DeltaOp[], literals: Uint8Array): PatchStep[] {
    if (this.finished) bad('ops after the end of the file');
    const { basisSize, blockSize, expectedSize } = this.limits;
    const steps: PatchStep[] = [];
    let lit = 0;
    let out = this.out;
    for (const op of ops) {
      const { length } = op;
      if (!Number.isSafeInteger(length) || length < 1) bad(`op length ${length}`);
      if (expectedSize !== undefined && out + length > expectedSize) bad(`ops build more than the ${expectedSize} B of the new file`);
      if (op.kind === DeltaOpKind.COPY) {
        const at = op.basisOffset;
        if (!Number.isSafeInteger(at) || at < 0 || at + length > basisSize) bad(`copy of [${at}, ${at + length}) outside the ${basisSize} B basis`);
        if (blockSize !== undefined && (at % blockSize !== 0 || (length % blockSize !== 0 && at + length !== basisSize))) {
          bad(`copy of [${at}, ${at + length}) is not whole ${blockSize} B blocks`);
        }
        const prev = steps.length > 0 ? steps[steps.length - 1]! : null;
        if (prev !== null && prev.kind === 'copy' && prev.basisOffset + prev.length === at) prev.length += length;
        else steps.push({ kind: 'copy', basisOffset: at, outOffset: out, length });
      } else if (op.kind === DeltaOpKind.LITERAL) {
        if (lit + length > literals.length) bad(`literal ops need more than the ${literals.length} B of literals sent`);
        steps.push({ kind: 'literal', outOffset: out, data: literals.subarray(lit, lit + length) });
        lit += length;
      } else {
        bad(`unknown op kind ${op.kind}`);
      }
      out += length;
    }
    if (lit !== literals.length) bad(`${literals.length - lit} B of literals left over`);
    this.out = out;
    return steps;
  }

  /** End of the ops: checks the size and returns it. */
  finish(): number {
    if (this.finished) bad('finished twice');
    this.finished = true;
    const { expectedSize } = this.limits;
    if (expectedSize !== undefined && this.out !== expectedSize) bad(`ops build ${this.out} B, the new file has ${expectedSize} B`);
    return this.out;
  }
}

/** Plan a whole delta given as batches (each: ops and their literal bytes). */
export function planPatch(batches: Iterable<{ ops: readonly DeltaOp[]; literals: Uint8Array }>, limits: PatchLimits): PatchStep[] {
  const planner = new PatchPlanner(limits);
  const steps: PatchStep[] = [];
  for (const b of batches) for (const s of planner.plan(b.ops, b.literals)) steps.push(s);
  planner.finish();
  return steps;
}

/** Rebuild the new file in memory from its basis and delta (tests, small files). */
export function applyDelta(
  basis: Uint8Array,
  batches: Iterable<{ ops: readonly DeltaOp[]; literals: Uint8Array }>,
  limits: Omit<PatchLimits, 'basisSize'> = {},
): Buffer {
  const steps = planPatch(batches, { ...limits, basisSize: basis.length });
  const last = steps.length > 0 ? steps[steps.length - 1]! : null;
  const size = last === null ? 0 : last.outOffset + (last.kind === 'copy' ? last.length : last.data.length);
  const out = Buffer.allocUnsafe(size);
  for (const s of steps) {
    if (s.kind === 'copy') out.set(basis.subarray(s.basisOffset, s.basisOffset + s.length), s.outOffset);
    else out.set(s.data, s.outOffset);
  }
  return out;
}
