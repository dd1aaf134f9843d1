import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { EntryType, MIN_PROTOCOL_VERSION, MsgType, PROTOCOL_VERSION, encodeFrame, type ErrorMsg, type Frame } from '@smartcopy/protocol';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { RawConn, agentAlive, clip, isPartName, listFiles, runCliBounded, waitFor } from '../fixtures/faults.js';
import { cleanup, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

/** --idle-timeout of the agent under test, in seconds */
const IDLE_S = 1;
/** keep-alive pings go at a tenth of the idle timeout: a wide margin for a loaded machine */
const PING_EVERY_MS = (IDLE_S * 1000) / 10;
/** Upper bound for anything the idle timeout should cause: far above IDLE_S, so load cannot flake it. */
const BOUND_MS = 15_000;

let seq = 0;
function hello(): Buffer {
  return Buffer.concat(
    encodeFrame(MsgType.HELLO, {
      version: PROTOCOL_VERSION,
      minVersion: MIN_PROTOCOL_VERSION,
      sessionId: `idle-${++seq}`,
      clientNonce: Buffer.alloc(32, 3),
      streamIndex: 0,
      streamCount: 1,
    }),
  );
}

function timeoutError(frames: readonly Frame[]): ErrorMsg | undefined {
  const f = frames.find((x) => x.type === MsgType.ERROR && (x.header as ErrorMsg).error?.codeName === 'SC_ERR_TIMEOUT');
  return f?.header as ErrorMsg | undefined;
}

function names(frames: readonly Frame[]): string {
  return frames.map((f) => (f.type === MsgType.ERROR ? `ERROR(${(f.header as ErrorMsg).error?.codeName})` : String(f.type))).join(', ');
}

describe(`idle timeout (--idle-timeout ${IDLE_S})`, () => {
  let root: string;
  let work: string;
  let agent: RunningAgent;
  const conns: RawConn[] = [];

  const connect = async (): Promise<RawConn> => {
    const c = await RawConn.connect(agent.port);
    conns.push(c);
    return c;
  };

  before(async () => {
    root = tempDir('idle-root');
    work = tempDir('idle-work');
    writeFile(work, 'src/a.txt', 'a');
    writeFile(work, 'src/b/c.bin', pseudoRandom(300_000, 4));
    agent = await startAgent(root, ['--idle-timeout', String(IDLE_S)]);
  });
  afterEach(() => {
    for (const c of conns.splice(0)) c.destroy();
  });
  after(async () => {
    await agent?.stop();
    cleanup(root, work);
  });

  it('a client that says HELLO and then nothing gets SC_ERR_TIMEOUT and is disconnected', async () => {
    const c = await connect();
    c.send(hello());
    assert.ok(await c.frame(MsgType.WELCOME, BOUND_MS), 'no WELCOME');
    assert.ok(await c.until(() => timeoutError(c.frames) !== undefined || c.closed, BOUND_MS), `no timeout within ${BOUND_MS} ms: ${names(c.frames)}`);
    const err = timeoutError(c.frames);
    assert.ok(err, `expected an ERROR frame SC_ERR_TIMEOUT, got: ${names(c.frames)}`);
    assert.equal(err.fatal, true);
    assert.ok(await c.agentDone(BOUND_MS), 'the agent did not end the connection after the timeout');
    assert.equal(c.decodeError, undefined);
    assert.match(agent.stderr(), /idle/);
  });

  it('the timed-out connection is closed even when the client never closes its side', async () => {
    const c = await connect();
    c.send(hello());
    assert.ok(await c.until(() => timeoutError(c.frames) !== undefined, BOUND_MS), `no timeout: ${names(c.frames)}`);
    assert.ok(await c.agentDone(BOUND_MS), 'the agent did not end the connection');
    // The client keeps its half open: the agent must still let go of the socket, or any silent
    // client holds a descriptor (and the agent's shutdown) forever.
    assert.ok(await c.released(BOUND_MS), `the agent sent its ERROR and FIN but still holds the socket open ${BOUND_MS} ms later`);
  });

  it('bytes of an unfinished frame are not activity: the connection still times out', async () => {
    const c = await connect();
    c.send(hello());
    assert.ok(await c.frame(MsgType.WELCOME, BOUND_MS));
    const ping = Buffer.concat(encodeFrame(MsgType.PING, { reply: false, nonce: 1 }));
    c.send(ping.subarray(0, ping.length - 1));
    assert.ok(await c.until(() => timeoutError(c.frames) !== undefined || c.closed, BOUND_MS), `no timeout: ${names(c.frames)}`);
    assert.ok(timeoutError(c.frames), `expected SC_ERR_TIMEOUT, got: ${names(c.frames)}`);
    assert.ok(await c.agentDone(BOUND_MS));
  });

  it('PINGs keep a connection alive; when they stop, it times out', async () => {
    const c = await connect();
    c.send(hello());
    assert.ok(await c.frame(MsgType.WELCOME, BOUND_MS));
    // pings at a tenth of the idle timeout (a wide margin for a loaded machine), for 2.5 periods
    const every = PING_EVERY_MS;
    const count = Math.ceil((2.5 * IDLE_S * 1000) / every);
    for (let i = 0; i < count; i++) {
      c.send(Buffer.concat(encodeFrame(MsgType.PING, { reply: false, nonce: i + 1 })));
      await new Promise((r) => setTimeout(r, every));
      assert.ok(!c.ended && !c.closed, `closed while pinging (after ${i + 1} pings): ${names(c.frames)}`);
    }
    const replies = c.frames.filter((f) => f.type === MsgType.PING && (f.header as { reply: boolean }).reply);
    assert.ok(replies.length >= count - 2, `${replies.length} PING replies to ${count} pings`);
    assert.ok(await c.until(() => timeoutError(c.frames) !== undefined || c.closed, BOUND_MS), `no timeout after the pings stopped: ${names(c.frames)}`);
    assert.ok(timeoutError(c.frames), names(c.frames));
  });

  it('a file left half-sent by a silent client is discarded when the connection times out', async () => {
    const c = await connect();
    c.send(hello());
    assert.ok(await c.frame(MsgType.WELCOME, BOUND_MS));
    const size = 1024 * 1024;
    const part = pseudoRandom(256 * 1024, 8);
    c.send(
      Buffer.concat([
        ...encodeFrame(MsgType.FILE_BEGIN, {
          fileId: 1,
          entry: { path: Buffer.from('stalled/file.bin'), type: EntryType.FILE, size, mode: 0o644, mtimeSec: 1_600_000_000 },
          hashAlgo: 'xxhash64',
        }),
        ...encodeFrame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: part.length }, part),
      ]),
    );
    const parts = (): string[] => [...listFiles(root).keys()].filter((rel) => isPartName(path.basename(rel)));
    // keep the connection alive with pings until the agent has the .part on disk, so the check
    // below is about a real temporary file
    let pinged = 0;
    const onDisk = await waitFor(() => {
      c.send(Buffer.concat(encodeFrame(MsgType.PING, { reply: false, nonce: ++pinged })));
      return parts().length > 0;
    }, BOUND_MS, PING_EVERY_MS);
    assert.ok(onDisk, `the agent never started a temporary file: ${names(c.frames)}`);
    assert.ok(await c.until(() => timeoutError(c.frames) !== undefined || c.closed, BOUND_MS), `no timeout: ${names(c.frames)}`);
    assert.ok(timeoutError(c.frames), names(c.frames));
    const noParts = (): boolean => parts().length === 0;
    // the agent removes the .part as the stream ends; give it a moment, bounded
    assert.ok(await waitFor(noParts, BOUND_MS), `temporary files left after the timeout: ${parts().join(', ')}`);
    assert.ok(!listFiles(root).has('stalled/file.bin'), 'a partial file appeared under its final name');
  });

  it('the agent keeps serving normal clients after timing others out', async () => {
    assert.ok(agentAlive(agent), clip(agent.stderr()));
    const r = await runCliBounded([path.join(work, 'src'), `127.0.0.1:${agent.port}:/served`], 60_000);
    assert.ok(!r.timedOut, 'the push hung');
    assert.equal(r.code, 0, clip(r.stderr));
    const back = path.join(work, 'back');
    const p = await runCliBounded([`127.0.0.1:${agent.port}:/served`, back], 60_000);
    assert.equal(p.code, 0, clip(p.stderr));
    assert.deepEqual([...listFiles(back).keys()].sort(), ['a.txt', 'b/c.bin']);
  });
});
