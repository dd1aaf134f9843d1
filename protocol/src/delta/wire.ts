import { ProtocolError, SmartcopyError } from '../errors.js';
import { MAX_PAYLOAD_SIZE } from '../framing/frame.js';
import { Compression, DeltaOpKind, type DeltaOp, type DeltaOps, type Signature } from '../schema/messages.js';
import type { DeltaBatch } from './match.js';
import { BasisSignature, sumRecordSize, type SignatureParams } from './signature.js';

/** Default bound on one Signature frame's payload. */
export const DEFAULT_SIGNATURE_PAYLOAD = 1024 * 1024;

/** A header and its raw payload, ready for the frame encoder. */
export interface DeltaFrame<H> {
  header: H;
  payload: Buffer;
}

/**
 * Signature frames for packed sum records (from SignatureBuilder.takeSums/finish), split so no
 * payload exceeds `maxPayload`. Payloads are views of `sums`. Each header's blockCount is the
 * number of records in its own payload; the receiver knows the total from basisSize/blockSize.
 */
export function signatureFrames(fileId: number, params: SignatureParams, sums: Buffer, maxPayload = DEFAULT_SIGNATURE_PAYLOAD): DeltaFrame<Signature>[] {
  const rec = sumRecordSize(params);
  if (sums.length % rec !== 0) throw new SmartcopyError('SC_ERR_INTERNAL', `${sums.length} B of sums is not whole ${rec} B records`);
  const perFrame = Math.max(1, Math.floor(Math.min(maxPayload, MAX_PAYLOAD_SIZE) / rec));
  const frames: DeltaFrame<Signature>[] = [];
  const total = sums.length / rec;
  for (let b = 0; b < total || (total === 0 && frames.length === 0); b += perFrame) {
    const n = Math.min(perFrame, total - b);
    frames.push({
      header: { fileId, blockSize: params.blockSize, strongLength: params.strongLength, basisSize: params.basisSize, blockCount: n },
      payload: sums.subarray(b * rec, (b + n) * rec),
    });
  }
  return frames;
}

/**
 * Add one received Signature frame to the signature being assembled (`into`, or a new one on
 * the first frame). Every frame must agree on the shape; `.complete` says when all blocks are in.
 */
export function readSignatureFrame(header: Signature, payload: Uint8Array, into: BasisSignature | null = null): BasisSignature {
  const params: SignatureParams = {
    blockSize: header.blockSize,
    strongLength: header.strongLength,
    basisSize: header.basisSize,
    blockCount: header.blockSize > 0 ? Math.ceil(header.basisSize / header.blockSize) : -1,
  };
  const sig = into ?? new BasisSignature(params);
  if (sig.blockSize !== params.blockSize || sig.strongLength !== params.strongLength || sig.basisSize !== params.basisSize) {
    throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta signature: frame for ${params.basisSize} B in ${params.blockSize} B blocks (${params.strongLength} B sums) continues one for ${sig.basisSize} B in ${sig.blockSize} B blocks (${sig.strongLength} B sums)`);
  }
  if (header.blockCount * sumRecordSize(sig) !== payload.length) {
    throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta signature: ${header.blockCount} blocks announced, ${payload.length} B of sums sent`);
  }
  return sig.addSums(payload);
}

/**
 * The DeltaOps frame of a batch. Without `compressed` the payload is the literals themselves;
 * with it, `compressed.payload` holds them compressed (rawLength stays the literal count).
 */
export function deltaOpsFrame(
  fileId: number,
  batch: DeltaBatch,
  compressed?: { compression: number; payload: Buffer },
): DeltaFrame<DeltaOps> {
  return {
    header: {
      fileId,
      ops: batch.ops,
      compression: compressed?.compression ?? Compression.NONE,
      rawLength: batch.literals.length,
    },
    payload: compressed?.payload ?? batch.literals,
  };
}

/**
 * A received DeltaOps frame as a batch. `literals` is the payload after decompression (the
 * caller undoes header.compression first); its length must equal rawLength and the literal ops.
 */
export function readDeltaOpsFrame(header: DeltaOps, literals: Buffer): DeltaBatch {
  if (header.rawLength !== literals.length) {
    throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta ops: raw length ${header.rawLength}, ${literals.length} B of literals`);
  }
  let need = 0;
  for (const op of header.ops) {
    if (op.kind === DeltaOpKind.LITERAL) need += op.length;
    else if (op.kind !== DeltaOpKind.COPY) throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta ops: unknown op kind ${op.kind}`);
  }
  if (need !== literals.length) {
    throw new ProtocolError('SC_ERR_PROTOCOL', `bad delta ops: literal ops take ${need} B, the frame has ${literals.length} B`);
  }
  return { ops: header.ops as DeltaOp[], literals };
}
