import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { BasisSignature, Matcher, initCodecs, type DeltaBatch, type SignatureParams } from '@smartcopy/protocol';

/**
 * A delta matcher thread: matching is CPU work (a rolling sum at every byte), so several files
 * are matched at once on several cores while the main thread only moves frames. The main thread
 * pulls results ("more"), which bounds the literal bytes waiting to be sent.
 */
interface StartMsg {
  kind: 'start';
  id: number;
  src: Uint8Array;
  params: SignatureParams;
  sums: Uint8Array;
  seed: number;
  noFollow: boolean;
}
type InMsg = StartMsg | { kind: 'more'; id: number } | { kind: 'cancel'; id: number };

interface Job {
  fd: number;
  matcher: Matcher;
  pos: number;
}

const PIECE = 1 << 20;
/** per answer: stop after this many literal bytes or this much input */
const LITERAL_STEP = 4 << 20;
const INPUT_STEP = 64 << 20;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

const jobs = new Map<number, Job>();
const port = parentPort!;

function fail(id: number, e: unknown): void {
  const err = e as NodeJS.ErrnoException;
  port.postMessage({ kind: 'error', id, code: err.code ?? 'EIO', message: err.message ?? String(e) });
  const j = jobs.get(id);
  if (j) fs.closeSync(j.fd);
  jobs.delete(id);
}

async function start(m: StartMsg): Promise<void> {
  try {
    await initCodecs();
    const sig = new BasisSignature(m.params).addSums(m.sums);
    const fd = fs.openSync(Buffer.from(m.src), fs.constants.O_RDONLY | (m.noFollow ? O_NOFOLLOW : 0));
    const matcher = await Matcher.create(sig, { seed: m.seed, hashAlgo: 'xxhash64' });
    jobs.set(m.id, { fd, matcher, pos: 0 });
    more(m.id);
  } catch (e) {
    fail(m.id, e);
  }
}

function more(id: number): void {
  const j = jobs.get(id);
  if (!j) return;
  try {
    const out: DeltaBatch[] = [];
    let literal = 0;
    let input = 0;
    let eof = false;
    while (literal < LITERAL_STEP && input < INPUT_STEP) {
      const into = j.matcher.inputBuffer();
      const n = fs.readSync(j.fd, into, 0, Math.min(into.length, PIECE), j.pos);
      if (n === 0) {
        eof = true;
        break;
      }
      j.pos += n;
      input += n;
      for (const b of j.matcher.commit(n)) {
        out.push(b);
        literal += b.literals.length;
      }
    }
    if (!eof) {
      post(id, out, undefined);
      return;
    }
    const done = j.matcher.finish();
    for (const b of done.batches) out.push(b);
    fs.closeSync(j.fd);
    jobs.delete(id);
    post(id, out, { hash: done.hash, stats: done.stats, size: j.pos });
  } catch (e) {
    fail(id, e);
  }
}

// Literals are cloned, not transferred: small ones may share a pooled slab with other buffers.
// They are the changed bytes only, so the copy is small next to the file.
function post(id: number, batches: DeltaBatch[], end: object | undefined): void {
  port.postMessage({ kind: 'batches', id, batches, end });
}

port.on('message', (m: InMsg) => {
  if (m.kind === 'start') void start(m);
  else if (m.kind === 'more') more(m.id);
  else {
    const j = jobs.get(m.id);
    if (j) fs.closeSync(j.fd);
    jobs.delete(m.id);
  }
});
