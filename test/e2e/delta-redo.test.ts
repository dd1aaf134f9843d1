import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FrameDecoder, MsgType, type Frame, type ReadRequest, type Signature } from '@smartcopy/protocol';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { events, runCli, summary } from '../fixtures/cli.js';
import { cleanup, pseudoRandom, tempDir } from '../fixtures/tree.js';

/*
 * The client's redo path, end to end: a real CLI run against a real TCP agent, through a proxy
 * that reads the frames going by and changes the receiver's basis file at the one moment that
 * matters: after the receiver's signature of it is complete, before any delta op is applied.
 * The sender matches against a signature that no longer describes the basis, the receiver's
 * whole-file check (or its size check) rejects the rebuilt file, and the client must send the
 * file whole and still finish the run with the right content and exit code 0.
 */

const SIZE = 3 * 1024 * 1024 + 777;

type Direction = 'up' | 'down';
type FrameTap = (dir: Direction, frame: Frame) => void;

interface TapProxy {
  port: number;
  /** frames the proxy could not decode (the tap then stops for that direction of that connection) */
  tapErrors: Error[];
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of the agent that hands every frame, in each direction, to `tap` before
 * the bytes that complete it are forwarded: whatever `tap` does synchronously happens before
 * the peer can see that frame.
 */
async function tapProxy(targetPort: number, tap: FrameTap): Promise<TapProxy> {
  const sockets = new Set<net.Socket>();
  const tapErrors: Error[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    const agent = net.connect({ port: targetPort, host: '127.0.0.1' });
    for (const s of [client, agent]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        agent.destroy();
      });
    }
    const pipe = (src: net.Socket, dst: net.Socket, dir: Direction): void => {
      let decoder: FrameDecoder | null = new FrameDecoder();
      src.on('data', (chunk: Buffer) => {
        try {
          if (decoder) for (const f of decoder.push(chunk)) tap(dir, f);
        } catch (e) {
          // a stream the decoder cannot follow is still forwarded; the test's own checks fail it
          decoder = null;
          tapErrors.push(e as Error);
        }
        if (!dst.write(chunk)) {
          src.pause();
          dst.once('drain', () => src.resume());
        }
      });
      src.on('end', () => dst.end());
    };
    agent.once('connect', () => {
      pipe(client, agent, 'up');
      pipe(agent, client, 'down');
      client.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    tapErrors,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Overwrite `length` bytes at `offset` in place: the same inode, so an open descriptor sees it too. */
function scribble(file: string, offset: number, length: number, seed: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, pseudoRandom(length, seed), 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function appendTo(file: string, length: number): void {
  fs.appendFileSync(file, pseudoRandom(length, 4242));
}

/** The new version of a basis: a few scattered 4 KiB overwrites (a delta moves ~1% of it). */
function edited(basis: Buffer): Buffer {
  const b = Buffer.from(basis);
  for (let k = 0; k < 8; k++) pseudoRandom(4096, 500 + k).copy(b, Math.floor(((k + 0.5) * SIZE) / 8));
  return b;
}

interface RunFacts {
  code: number | null;
  stderr: string;
  summary: Record<string, number | boolean | string>;
  /** error events that announce a file going whole after its delta was refused */
  redos: Array<Record<string, unknown>>;
}

function facts(r: { code: number | null; stdout: string; stderr: string }): RunFacts {
  const redos = events(r.stdout).filter((e) => e.event === 'error' && /sending it whole/.test(String(e.message)));
  return { code: r.code, stderr: r.stderr, summary: summary(r.stdout), redos };
}

describe('--delta: a refused delta is redone whole by the client', { timeout: 120_000 }, () => {
  let work: string;
  let root: string;
  let agent: RunningAgent;
  let proxy: TapProxy;
  let basis: Buffer;
  let target: Buffer;
  /** what the proxy does when it sees a frame; reset by each test */
  let onFrame: FrameTap = () => {};

  before(async () => {
    work = tempDir('delta-redo-work');
    root = tempDir('delta-redo-root');
    basis = pseudoRandom(SIZE, 31);
    target = edited(basis);
    fs.writeFileSync(path.join(work, 'new.bin'), target);
    agent = await startAgent(root);
    proxy = await tapProxy(agent.port, (dir, f) => onFrame(dir, f));
  });
  after(async () => {
    await proxy.close();
    await agent.stop();
    cleanup(work, root);
    assert.deepEqual(proxy.tapErrors, [], 'the proxy decoded every frame');
  });

  /**
   * Push `new.bin` over `rel` in the agent's root (holding the old basis), calling `change` on
   * the basis once the agent has sent the last Signature frame of it.
   */
  async function push(rel: string, change: ((basisPath: string) => void) | null): Promise<RunFacts & { changed: boolean }> {
    const basisPath = path.join(root, rel);
    fs.writeFileSync(basisPath, basis);
    let changed = false;
    const blocksSeen = new Map<number, number>();
    onFrame = (dir, f) => {
      if (change === null || changed || dir !== 'down' || f.type !== MsgType.SIGNATURE) return;
      const h = f.header as Signature;
      const seen = (blocksSeen.get(h.fileId) ?? 0) + h.blockCount;
      blocksSeen.set(h.fileId, seen);
      // the agent has read all of the basis once it sends the last block's sums
      if (seen === Math.ceil(h.basisSize / h.blockSize)) {
        change(basisPath);
        changed = true;
      }
    };
    const r = await runCli([path.join(work, 'new.bin'), `127.0.0.1:${proxy.port}:/${rel}`, '--delta', '--json']);
    return { ...facts(r), changed };
  }

  it('through the proxy, an untouched basis gives a small delta and no redo (the control)', async () => {
    const r = await push('control.bin', null);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.readFileSync(path.join(root, 'control.bin')).equals(target));
    assert.equal(r.redos.length, 0);
    assert.ok((r.summary.bytesOnWire as number) < SIZE * 0.1, `wire ${r.summary.bytesOnWire}`);
  });

  it('push: basis content changed after its signature → whole-file hash mismatch → the file is sent whole', async () => {
    // overwrite a stretch the new file shares with the old basis: its copy ops now fetch other bytes
    const r = await push('content.bin', (p) => scribble(p, 1024 * 1024, 64 * 1024, 99));
    assert.ok(r.changed, 'the proxy saw the whole signature and changed the basis');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.readFileSync(path.join(root, 'content.bin')).equals(target), 'the destination equals the source');
    assert.equal(r.redos.length, 1, `one redo announced: ${JSON.stringify(r.redos)}`);
    assert.equal(r.redos[0]!.code, 'SC_ERR_CHECKSUM_MISMATCH');
    const s = r.summary;
    assert.equal(s.ok, true);
    assert.equal(s.filesCopied, 1);
    assert.equal(s.filesFailed, 0);
    assert.equal(s.bytes, SIZE);
    assert.ok((s.bytesMatched as number) > 0, 'the delta was tried');
    // the redo is what the summary's wire bytes show: the whole file crossed after the delta
    assert.ok((s.bytesOnWire as number) >= SIZE, `wire ${s.bytesOnWire}`);
    assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.sc-part')), [], 'no temp file left');
  });

  it('push: basis grew after its signature → refused by the size check → the file is sent whole', async () => {
    const r = await push('grown.bin', (p) => appendTo(p, 5000));
    assert.ok(r.changed);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.readFileSync(path.join(root, 'grown.bin')).equals(target));
    assert.equal(r.redos.length, 1, `one redo announced: ${JSON.stringify(r.redos)}`);
    assert.match(String(r.redos[0]!.message), /changed since its signature/);
    assert.equal(r.summary.filesCopied, 1);
    assert.equal(r.summary.filesFailed, 0);
    assert.ok((r.summary.bytesOnWire as number) >= SIZE, `wire ${r.summary.bytesOnWire}`);
  });

  it('pull: the local basis changed after the client signed it → the client fetches the file whole', async () => {
    fs.writeFileSync(path.join(root, 'remote-new.bin'), target);
    const local = path.join(work, 'pulled.bin');
    fs.writeFileSync(local, basis);
    let changed = false;
    onFrame = (dir, f) => {
      if (changed || dir !== 'up' || f.type !== MsgType.READ_REQUEST) return;
      // the request for delta ops carries the signature the client just took of its copy
      if (!(f.header as ReadRequest).items.some((i) => i.delta)) return;
      scribble(local, 2 * 1024 * 1024, 64 * 1024, 7);
      changed = true;
    };
    const r = facts(await runCli([`127.0.0.1:${proxy.port}:/remote-new.bin`, local, '--delta', '--json']));
    assert.ok(changed, 'the proxy saw the delta request and changed the basis');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.readFileSync(local).equals(target), 'the destination equals the source');
    assert.equal(r.redos.length, 1, `one redo announced: ${JSON.stringify(r.redos)}`);
    assert.equal(r.summary.filesCopied, 1);
    assert.equal(r.summary.filesFailed, 0);
    assert.equal(r.summary.bytes, SIZE);
    assert.ok((r.summary.bytesOnWire as number) >= SIZE, `wire ${r.summary.bytesOnWire}`);
  });
});
