import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import {
  EntryType,
  FRAME_PREFIX_SIZE,
  FrameDecoder,
  MAX_FRAME_SIZE,
  MIN_PROTOCOL_VERSION,
  MsgType,
  PROTOCOL_VERSION,
  SmartcopyError,
  encodeFrame,
  msgTypeName,
  type ErrorMsg,
  type Frame,
  type Manifest,
  type Result,
} from '@smartcopy/protocol';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { RawConn, Rng, agentAlive, clip, listFiles, runCliBounded, sha256File, waitFor } from '../fixtures/faults.js';
import { cleanup, pseudoRandom, snapshot, tempDir, writeFile } from '../fixtures/tree.js';

const SEED = 0x5eed_f022;
const ITERATIONS = 300;
/** fuzz connections open at once */
const PARALLEL = 4;
/** generous bounds: an agent that takes longer than this to answer or to close is stuck */
const ANSWER_MS = 5000;
const CLOSE_MS = 5000;
/** an honest CLI run past this is hung (killed, and the test fails) */
const CLI_MS = 60_000;
const SECRET = 'outside the root: never read, written or removed';

let sessionSeq = 0;
function hello(over: Record<string, unknown> = {}): Buffer {
  return Buffer.concat(
    encodeFrame(MsgType.HELLO, {
      version: PROTOCOL_VERSION,
      minVersion: MIN_PROTOCOL_VERSION,
      sessionId: `fuzz-${++sessionSeq}`,
      clientNonce: Buffer.alloc(32, 7),
      streamIndex: 0,
      streamCount: 1,
      ...over,
    }),
  );
}

function frame(type: number, header: object, payload?: Buffer): Buffer {
  return Buffer.concat(encodeFrame(type, header, payload));
}

function fileEntry(p: string, size: number, type: number = EntryType.FILE): object {
  return { path: Buffer.from(p), type, size, mode: type === EntryType.DIRECTORY ? 0o755 : 0o644, mtimeSec: 1_600_000_000 };
}

/** Content of a tree, for "nothing changed": paths, types, file hashes, link targets. */
function fingerprint(dir: string): string[] {
  return [...snapshot(dir)].map(([k, n]) => `${k} ${n.type} ${n.sha}${n.link}`).sort();
}

/** An agent ERROR frame's code name, or undefined. */
function errorCode(f: Frame | undefined): string | undefined {
  return f?.type === MsgType.ERROR ? (f.header as ErrorMsg).error?.codeName : undefined;
}

function describeFrames(frames: readonly Frame[]): string {
  return frames
    .map((f) => {
      if (f.type === MsgType.ERROR) return `ERROR(${(f.header as ErrorMsg).error?.codeName}: ${(f.header as ErrorMsg).error?.message})`;
      if (f.type === MsgType.RESULT) {
        const r = f.header as Result;
        return `RESULT(${r.ok ? 'ok' : r.error?.codeName})`;
      }
      return msgTypeName(f.type);
    })
    .join(', ');
}

/** What the agent's own decoder must make of `bytes`: the frames before a failure, and the failure. */
function predict(bytes: Buffer): { frames: Frame[]; error: SmartcopyError | undefined } {
  const d = new FrameDecoder();
  const frames: Frame[] = [];
  // one byte at a time: the frames completed before the first violation, exactly
  for (let i = 0; i < bytes.length; i++) {
    try {
      frames.push(...d.push(bytes.subarray(i, i + 1)));
    } catch (e) {
      return { frames, error: e as SmartcopyError };
    }
  }
  return { frames, error: undefined };
}

/**
 * Valid frame sequences a client could send after HELLO, touching only `fuzz/` under the root,
 * for the mutator to start from.
 */
function templates(): Buffer[][] {
  const data = Buffer.from('fuzzed content\n');
  return [
    [frame(MsgType.LIST_REQUEST, { requestId: 1, path: Buffer.from('fuzz'), recursive: true })],
    [
      frame(MsgType.FILE_BEGIN, { fileId: 1, entry: fileEntry('fuzz/f.txt', data.length), hashAlgo: '' }),
      frame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: data.length }, data),
      frame(MsgType.FILE_END, { fileId: 1 }),
    ],
    [frame(MsgType.MKDIR, { requestId: 2, entry: fileEntry('fuzz/dir', 0, EntryType.DIRECTORY) })],
    [frame(MsgType.DELETE, { requestId: 3, path: Buffer.from('fuzz/victim'), type: EntryType.FILE })],
    [frame(MsgType.SYMLINK, { requestId: 4, entry: { ...fileEntry('fuzz/link', 0, EntryType.SYMLINK), linkTarget: Buffer.from('f.txt') } })],
    [
      frame(MsgType.CHUNK_BEGIN, { fileId: 5, entry: fileEntry('fuzz/big.bin', 2 * data.length), offset: 0, length: data.length, transferId: 'fuzzchunk', hashAlgo: '' }),
      frame(MsgType.DATA, { fileId: 5, offset: 0, rawLength: data.length }, data),
      frame(MsgType.CHUNK_END, { fileId: 5, offset: 0 }),
    ],
    [frame(MsgType.COMMIT, { fileId: 6, entry: fileEntry('fuzz/big.bin', 2 * data.length), transferId: 'fuzzchunk', chunkCount: 2 })],
    [frame(MsgType.FINISH, { requestId: 7, directories: [fileEntry('fuzz', 0, EntryType.DIRECTORY)] })],
    [frame(MsgType.READ_REQUEST, { requestId: 8, items: [{ fileId: 9, entry: fileEntry('fuzz/victim', 6), destPath: Buffer.from('x') }] })],
    [frame(MsgType.PING, { reply: false, nonce: 42 })],
  ];
}

type Kind = 'random-bytes' | 'hello+random-bytes' | 'random-frame' | 'random-fields' | 'mutated-hello' | 'mutated-frames' | 'oversize';

interface Case {
  kind: Kind;
  /** whether a valid HELLO precedes `bytes` */
  withHello: boolean;
  bytes: Buffer;
  how: string;
}

const VALID_TYPES = Object.values(MsgType) as number[];

function mutate(rng: Rng, input: Buffer): { bytes: Buffer; how: string } {
  const b = Buffer.from(input);
  switch (rng.int(0, 5)) {
    case 0: {
      const n = rng.int(1, 8);
      // mostly past the first prefix, so that damaged headers and payloads reach the handlers
      const from = b.length > FRAME_PREFIX_SIZE && rng.chance(0.8) ? FRAME_PREFIX_SIZE : 0;
      for (let i = 0; i < n; i++) b[rng.int(from, b.length - 1)]! ^= 1 << rng.int(0, 7);
      return { bytes: b, how: `${n} bit flips` };
    }
    case 1: {
      const at = rng.int(1, b.length - 1);
      return { bytes: b.subarray(0, at), how: `truncated to ${at} of ${b.length} bytes` };
    }
    case 2: {
      // the frame length field of the first frame: small, huge or off by a little
      const v = rng.pick([rng.int(0, 8), rng.int(MAX_FRAME_SIZE + 1, 0xffffffff), Math.max(0, b.readUInt32BE(0) + rng.int(-8, 8))]);
      b.writeUInt32BE(v >>> 0, 0);
      return { bytes: b, how: `frame length set to ${v >>> 0}` };
    }
    case 3: {
      const v = rng.pick([0, rng.int(0, 64), rng.int(0, 0xffffffff)]);
      b.writeUInt32BE(v >>> 0, 5);
      return { bytes: b, how: `header length set to ${v >>> 0}` };
    }
    case 4: {
      b[4] = rng.pick([0, rng.int(26, 255), rng.pick(VALID_TYPES)]);
      return { bytes: b, how: `type byte set to ${b[4]}` };
    }
    default: {
      const at = rng.int(FRAME_PREFIX_SIZE, b.length);
      const junk = rng.bytes(rng.int(1, 32));
      return { bytes: Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]), how: `${junk.length} random bytes inserted at ${at}` };
    }
  }
}

/**
 * Well-formed frames of the types a client sends, with hostile field values: paths that escape
 * or are huge, sizes and offsets at the limits, ids that collide or are never opened.
 */
function randomFields(rng: Rng): { bytes: Buffer; how: string } {
  const num = (): number => rng.pick([0, 1, rng.int(0, 4096), rng.int(0, 0xffffffff), Number.MAX_SAFE_INTEGER, 2 ** 40 + rng.int(0, 99)]);
  const p = (): Buffer =>
    rng.pick([
      () => Buffer.from(`fuzz/r${rng.int(0, 9)}`),
      () => Buffer.from(`fuzz/d${rng.int(0, 3)}/r${rng.int(0, 9)}`),
      () => Buffer.from(rng.pick(['', '..', '.', '/', 'fuzz/..', 'fuzz/../..', '../outside/secret.txt', '/etc/passwd', 'fuzz//x', 'fuzz/x/', 'leak', 'leakdir/secret.txt', 'fuzz/victim'])),
      () => Buffer.from(`fuzz/${'n'.repeat(rng.int(200, 5000))}`),
      () => Buffer.concat([Buffer.from('fuzz/'), rng.bytes(rng.int(1, 24))]),
    ])();
  const entry = (): object => ({
    path: p(),
    type: rng.int(0, 6),
    size: rng.pick([0, rng.int(1, 64), num()]),
    mtimeSec: rng.pick([0, 1_600_000_000, -rng.int(1, 2 ** 31), num()]),
    mtimeNsec: rng.pick([0, 999_999_999, rng.int(0, 0xffffffff)]),
    mode: rng.pick([0o644, 0o755, rng.int(0, 0o7777), rng.int(0, 0xffffffff)]),
    linkTarget: rng.chance(0.5) ? p() : undefined,
    uid: rng.pick([0, 1000, rng.int(0, 0xffffffff)]),
    gid: rng.pick([0, 1000, rng.int(0, 0xffffffff)]),
  });
  const id = (): number => rng.int(0, 3);
  const tid = (): string => rng.pick(['t1', 't2', '', '../x', 'x'.repeat(80), rng.bytes(4).toString('latin1')]);
  const algo = (): string => rng.pick(['', 'xxhash64', 'xxhash3', 'blake3', 'sha256', 'md5', 'nonsense']);
  const payload = (): Buffer => rng.bytes(rng.pick([0, rng.int(1, 64), rng.int(64, 4096)]));
  const makers: Array<[string, () => Buffer]> = [
    ['LIST_REQUEST', () => frame(MsgType.LIST_REQUEST, { requestId: num(), path: p(), recursive: rng.chance(0.5), wantHashes: rng.chance(0.5), hashAlgo: algo() })],
    ['FILE_BEGIN', () => frame(MsgType.FILE_BEGIN, { fileId: id(), entry: rng.chance(0.9) ? entry() : undefined, hashAlgo: algo(), verify: rng.chance(0.3), verifyAlgo: algo(), fsync: rng.chance(0.2), nativeSource: rng.chance(0.1) ? Buffer.from('/etc/passwd') : undefined })],
    ['DATA', () => {
      const data = payload();
      return frame(MsgType.DATA, { fileId: id(), offset: rng.pick([0, rng.int(0, 64), num()]), rawLength: rng.pick([data.length, num()]), compression: rng.pick([0, 0, 1, rng.int(2, 9)]) }, data);
    }],
    ['FILE_END', () => frame(MsgType.FILE_END, { fileId: id(), hash: rng.bytes(rng.pick([0, 8, 32])), aborted: rng.chance(0.2) })],
    ['CHUNK_BEGIN', () => frame(MsgType.CHUNK_BEGIN, { fileId: id(), entry: entry(), offset: rng.pick([0, num()]), length: rng.pick([0, rng.int(1, 64), num()]), transferId: tid(), hashAlgo: algo() })],
    ['CHUNK_END', () => frame(MsgType.CHUNK_END, { fileId: id(), offset: rng.pick([0, num()]), hash: rng.bytes(8) })],
    ['COMMIT', () => frame(MsgType.COMMIT, { fileId: id(), entry: entry(), transferId: tid(), chunkCount: rng.pick([0, 1, num()]), verifyHash: rng.bytes(rng.pick([0, 8])), verifyAlgo: algo() })],
    ['DELETE', () => frame(MsgType.DELETE, { requestId: num(), path: p(), type: rng.int(0, 6) })],
    ['MKDIR', () => frame(MsgType.MKDIR, { requestId: num(), entry: entry() })],
    ['SYMLINK', () => frame(MsgType.SYMLINK, { requestId: num(), entry: entry() })],
    // never the root itself: a FINISH for '' legitimately sets the root's mode, which would
    // break the rest of the run rather than find a bug
    ['FINISH', () => frame(MsgType.FINISH, { requestId: num(), directories: [entry(), entry()].filter((e) => (e as { path: Buffer }).path.length > 0) })],
    ['READ_REQUEST', () => frame(MsgType.READ_REQUEST, {
      requestId: num(),
      items: Array.from({ length: rng.int(0, 3) }, () => ({ fileId: id(), entry: entry(), destPath: p(), chunk: rng.chance(0.3), offset: rng.pick([0, num()]), length: rng.pick([0, rng.int(1, 64), num()]), transferId: tid() })),
      hashAlgo: algo(),
      verifyAlgo: algo(),
      compress: rng.chance(0.3),
      bandwidthLimit: rng.pick([0, 1, num()]),
    })],
    ['PING', () => frame(MsgType.PING, { reply: rng.chance(0.5), nonce: num() })],
    ['ERROR', () => frame(MsgType.ERROR, { fatal: rng.chance(0.5), error: { code: rng.int(0, 99), codeName: 'SC_ERR_FUZZ', message: 'fuzz' } })],
    ['BYE', () => frame(MsgType.BYE, {})],
  ];
  const n = rng.int(1, 4);
  const picked = Array.from({ length: n }, () => rng.pick(makers));
  return { bytes: Buffer.concat(picked.map(([, make]) => make())), how: picked.map(([name]) => name).join(' + ') };
}

function makeCase(i: number, tpl: Buffer[][]): Case {
  const rng = new Rng((SEED ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const kind = rng.pick<Kind>([
    'random-bytes',
    'hello+random-bytes',
    'random-frame',
    'random-fields',
    'random-fields',
    'random-fields',
    'mutated-hello',
    'mutated-frames',
    'mutated-frames',
    'mutated-frames',
    'oversize',
  ]);
  switch (kind) {
    case 'random-bytes':
    case 'hello+random-bytes': {
      const n = rng.int(1, 2048);
      return { kind, withHello: kind !== 'random-bytes', bytes: rng.bytes(n), how: `${n} random bytes` };
    }
    case 'random-frame': {
      // well-formed framing around a random header and payload: the handlers see garbage fields
      const type = rng.pick(VALID_TYPES);
      const header = rng.bytes(rng.int(0, 48));
      const payload = rng.bytes(rng.int(0, 48));
      const prefix = Buffer.alloc(FRAME_PREFIX_SIZE);
      prefix.writeUInt32BE(5 + header.length + payload.length, 0);
      prefix[4] = type;
      prefix.writeUInt32BE(header.length, 5);
      return { kind, withHello: true, bytes: Buffer.concat([prefix, header, payload]), how: `${msgTypeName(type)} with a random header` };
    }
    case 'random-fields':
      return { kind, withHello: true, ...randomFields(rng) };
    case 'mutated-hello': {
      const m = mutate(rng, hello());
      return { kind, withHello: false, ...m };
    }
    case 'mutated-frames': {
      const t = rng.pick(tpl);
      const m = mutate(rng, Buffer.concat(t));
      return { kind, withHello: true, ...m };
    }
    case 'oversize': {
      const len = rng.int(MAX_FRAME_SIZE + 1, 0xffffffff);
      const b = Buffer.alloc(rng.int(4, 64));
      b.writeUInt32BE(len, 0);
      b[4] = rng.pick(VALID_TYPES);
      return { kind, withHello: rng.chance(0.5), bytes: b, how: `length prefix ${len}` };
    }
  }
}

/** every raw connection a test opened; destroyed after each test, whatever its outcome */
const opened = new Set<RawConn>();

async function connect(port: number): Promise<RawConn> {
  const c = await RawConn.connect(port);
  opened.add(c);
  c.socket.once('close', () => opened.delete(c));
  return c;
}

/** Connect, optionally complete the handshake, and return the connection. */
async function open(port: number, withHello: boolean): Promise<RawConn> {
  const c = await connect(port);
  if (withHello) {
    c.send(hello());
    const w = await c.frame(MsgType.WELCOME, ANSWER_MS);
    assert.ok(w, `no WELCOME after HELLO: ${describeFrames(c.frames)}`);
  }
  return c;
}

/**
 * The agent must answer a frame that breaks the framing with a fatal ERROR frame naming the
 * violation, then close that connection on its own.
 */
async function expectFatal(c: RawConn, code: string | RegExp, label: string): Promise<void> {
  const gotError = await c.until(() => c.frames.some((f) => f.type === MsgType.ERROR) || c.closed, ANSWER_MS);
  const err = c.frames.find((f) => f.type === MsgType.ERROR);
  assert.ok(gotError && err, `${label}: no ERROR frame (got: ${describeFrames(c.frames)}; closed: ${c.closed})`);
  const name = errorCode(err);
  if (typeof code === 'string') assert.equal(name, code, `${label}: ${describeFrames(c.frames)}`);
  else assert.match(name ?? '', code, `${label}: ${describeFrames(c.frames)}`);
  assert.equal((err.header as ErrorMsg).fatal, true, `${label}: the ERROR frame is not fatal`);
  assert.ok(await c.agentDone(CLOSE_MS), `${label}: the agent did not close the connection after a fatal error`);
  assert.equal(c.decodeError, undefined, `${label}: the agent's reply does not decode: ${c.decodeError?.message}`);
  c.destroy();
}

describe('fuzzing the agent: random and mutated frames', () => {
  let sandbox: string;
  let root: string;
  let outside: string;
  let work: string;
  let agent: RunningAgent;
  let outsideBefore: string[];

  before(async () => {
    sandbox = tempDir('fuzz');
    root = path.join(sandbox, 'root');
    outside = path.join(sandbox, 'outside');
    work = tempDir('fuzz-work');
    writeFile(outside, 'secret.txt', SECRET);
    writeFile(outside, 'dir/inner.txt', SECRET);
    writeFile(sandbox, 'beside-root.txt', SECRET);
    writeFile(root, 'keep/a.txt', 'kept');
    writeFile(root, 'keep/sub/b.bin', pseudoRandom(10_000, 5));
    writeFile(root, 'fuzz/victim', 'victim');
    // links planted inside the root that point outside it
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'leak'));
    fs.symlinkSync(outside, path.join(root, 'leakdir'));
    writeFile(work, 'src/a.txt', 'honest a');
    writeFile(work, 'src/dir/b.bin', pseudoRandom(3 * 1024 * 1024 + 1, 9));
    for (let i = 0; i < 200; i++) writeFile(work, `src/many/${i % 10}/${i}.txt`, pseudoRandom(i * 31, 100 + i));
    outsideBefore = [...fingerprint(outside), ...fs.readdirSync(sandbox).sort()];
    agent = await startAgent(root);
  });
  beforeEach(async () => {
    // a test that brought the agent down has failed already; the next one starts afresh
    if (agent && !agentAlive(agent)) agent = await startAgent(root);
  });
  afterEach(() => {
    for (const c of opened) c.destroy();
  });
  after(async () => {
    await agent?.stop();
    cleanup(sandbox, work);
  });

  const assertOutsideUntouched = (label: string): void => {
    assert.deepEqual([...fingerprint(outside), ...fs.readdirSync(sandbox).sort()], outsideBefore, `${label}: something outside the root changed`);
    assert.equal(fs.readFileSync(path.join(sandbox, 'beside-root.txt'), 'utf8'), SECRET);
  };

  it('an oversize length prefix gets SC_ERR_FRAME_TOO_LARGE and the connection is closed', async () => {
    for (const withHello of [false, true]) {
      for (const len of [MAX_FRAME_SIZE + 1, 0x7fffffff, 0xffffffff]) {
        const c = await open(agent.port, withHello);
        const b = Buffer.alloc(4);
        b.writeUInt32BE(len, 0);
        // only the length: the agent must not wait for the rest of a frame it will never accept
        c.send(b);
        await expectFatal(c, 'SC_ERR_FRAME_TOO_LARGE', `length ${len}${withHello ? ' after HELLO' : ''}`);
      }
    }
  });

  it('malformed frames get SC_ERR_MALFORMED_FRAME and the connection is closed', async () => {
    const prefix = (len: number, type: number, headerLen: number): Buffer => {
      const b = Buffer.alloc(FRAME_PREFIX_SIZE);
      b.writeUInt32BE(len, 0);
      b[4] = type;
      b.writeUInt32BE(headerLen, 5);
      return b;
    };
    const cases: Array<[string, Buffer]> = [
      ['length below the minimum', prefix(2, MsgType.PING, 0)],
      ['frame type 0', prefix(5, 0, 0)],
      ['unknown frame type 200', prefix(5, 200, 0)],
      ['header longer than the frame', prefix(10, MsgType.PING, 100)],
      // field 1 (tag 0x0a, length-delimited) claiming 100 bytes when 3 follow
      ['undecodable header', Buffer.concat([prefix(5 + 4, MsgType.LIST_REQUEST, 4), Buffer.from([0x12, 0x64, 0x41, 0x42])])],
    ];
    for (const withHello of [false, true]) {
      for (const [what, bytes] of cases) {
        const c = await open(agent.port, withHello);
        c.send(bytes);
        await expectFatal(c, 'SC_ERR_MALFORMED_FRAME', `${what}${withHello ? ' after HELLO' : ''}`);
      }
    }
  });

  it('anything but HELLO first, unexpected frame types and a second HELLO get SC_ERR_PROTOCOL', async () => {
    for (const t of [MsgType.LIST_REQUEST, MsgType.DATA, MsgType.BYE, MsgType.AUTH]) {
      const c = await open(agent.port, false);
      c.send(frame(t, {}));
      await expectFatal(c, 'SC_ERR_PROTOCOL', `${msgTypeName(t)} before HELLO`);
    }
    const unexpected = [
      MsgType.HELLO,
      MsgType.WELCOME,
      MsgType.AUTH,
      MsgType.AUTH_RESULT,
      MsgType.MANIFEST,
      MsgType.RESULT,
      MsgType.SIGNATURE,
      MsgType.DELTA_OPS,
      MsgType.STATS,
    ];
    for (const t of unexpected) {
      const c = await open(agent.port, true);
      c.send(t === MsgType.HELLO ? hello() : frame(t, {}));
      await expectFatal(c, 'SC_ERR_PROTOCOL', `${msgTypeName(t)} after the handshake`);
    }
  });

  it('DATA, FILE_END and CHUNK_END for files never opened get SC_ERR_PROTOCOL', async () => {
    const before = fingerprint(root);
    const frames = [
      frame(MsgType.DATA, { fileId: 77, offset: 0, rawLength: 4 }, Buffer.from('evil')),
      frame(MsgType.FILE_END, { fileId: 77 }),
      frame(MsgType.CHUNK_END, { fileId: 77, offset: 0 }),
    ];
    for (const f of frames) {
      const c = await open(agent.port, true);
      c.send(f);
      await expectFatal(c, 'SC_ERR_PROTOCOL', `${msgTypeName(f[4]!)} for an unopened file`);
    }
    // DATA for a file opened on another stream of the same session is still not open here
    const sid = `shared-${++sessionSeq}`;
    const a = await connect(agent.port);
    const b = await connect(agent.port);
    try {
      a.send(hello({ sessionId: sid, streamCount: 2 }));
      b.send(hello({ sessionId: sid, streamIndex: 1, streamCount: 2 }));
      assert.ok(await a.frame(MsgType.WELCOME, ANSWER_MS));
      assert.ok(await b.frame(MsgType.WELCOME, ANSWER_MS));
      a.send(frame(MsgType.FILE_BEGIN, { fileId: 1, entry: fileEntry('fuzz/other-stream.txt', 4), hashAlgo: '' }));
      b.send(frame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: 4 }, Buffer.from('evil')));
      await expectFatal(b, 'SC_ERR_PROTOCOL', 'DATA for a file opened on another stream');
      assert.ok(await a.finish(CLOSE_MS), 'the other stream closes when its client ends it');
    } finally {
      a.destroy();
      b.destroy();
    }
    assert.deepEqual(fingerprint(root), before, 'nothing was written');
  });

  it("paths with '..', absolute paths and paths through symlinks are refused and touch nothing", async () => {
    const escapes = ['../escaped.txt', 'fuzz/../../escaped.txt', '..', '/tmp/sc-fuzz-absolute', 'keep/../x.txt', 'leakdir/planted.txt', 'leakdir/dir/inner.txt'];
    const data = Buffer.from('evil');
    const refused = (f: Frame | undefined): boolean =>
      f !== undefined && ((f.type === MsgType.RESULT && !(f.header as Result).ok) || f.type === MsgType.ERROR);
    const codeOf = (f: Frame): string | undefined =>
      f.type === MsgType.ERROR ? errorCode(f) : (f.header as Result).error?.codeName;

    for (const p of escapes) {
      const before = fingerprint(root);
      const ops: Array<[string, Buffer[]]> = [
        ['FILE_BEGIN', [
          frame(MsgType.FILE_BEGIN, { fileId: 1, entry: fileEntry(p, data.length), hashAlgo: '' }),
          frame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: data.length }, data),
          frame(MsgType.FILE_END, { fileId: 1 }),
        ]],
        ['CHUNK_BEGIN', [
          frame(MsgType.CHUNK_BEGIN, { fileId: 2, entry: fileEntry(p, data.length), offset: 0, length: data.length, transferId: 'esc', hashAlgo: '' }),
          frame(MsgType.DATA, { fileId: 2, offset: 0, rawLength: data.length }, data),
          frame(MsgType.CHUNK_END, { fileId: 2, offset: 0 }),
        ]],
        ['COMMIT', [frame(MsgType.COMMIT, { fileId: 3, entry: fileEntry(p, data.length), transferId: 'esc', chunkCount: 1 })]],
        ['MKDIR', [frame(MsgType.MKDIR, { requestId: 4, entry: fileEntry(p, 0, EntryType.DIRECTORY) })]],
        ['SYMLINK', [frame(MsgType.SYMLINK, { requestId: 5, entry: { ...fileEntry(p, 0, EntryType.SYMLINK), linkTarget: Buffer.from('/etc/passwd') } })]],
        ['DELETE', [frame(MsgType.DELETE, { requestId: 6, path: Buffer.from(p), type: EntryType.FILE })]],
        ['FINISH', [frame(MsgType.FINISH, { requestId: 7, directories: [{ ...fileEntry(p, 0, EntryType.DIRECTORY), mode: 0o777 }] })]],
        ['LIST_REQUEST', [frame(MsgType.LIST_REQUEST, { requestId: 8, path: Buffer.from(p), recursive: true })]],
        ['READ_REQUEST', [frame(MsgType.READ_REQUEST, { requestId: 9, items: [{ fileId: 10, entry: fileEntry(p, SECRET.length), destPath: Buffer.from('x') }] })]],
      ];
      for (const [op, frames] of ops) {
        const label = `${op} ${JSON.stringify(p)}`;
        const c = await open(agent.port, true);
        for (const f of frames) c.send(f);
        // the first answer about this operation: a failed RESULT or a fatal ERROR
        await c.until(() => c.frames.some((f) => refused(f) || (f.type === MsgType.RESULT && (f.header as Result).ok)) || c.closed, ANSWER_MS);
        const answer = c.frames.find((f) => f.type === MsgType.RESULT || f.type === MsgType.ERROR);
        assert.ok(refused(answer), `${label} was not refused: ${describeFrames(c.frames)}`);
        assert.match(codeOf(answer!) ?? '', /^SC_ERR_(PATH_ESCAPE|NOT_FOUND|DEST_INVALID)$/, `${label}: ${describeFrames(c.frames)}`);
        assert.ok(!c.frames.some((f) => f.type === MsgType.MANIFEST && (f.header as Manifest).entries.length > 0), `${label}: listed entries`);
        assert.ok(!c.frames.some((f) => f.payload.includes(SECRET)), `${label}: sent bytes from outside the root`);
        assert.ok(await c.finish(CLOSE_MS), `${label}: connection not closed`);
        assert.deepEqual(fingerprint(root), before, `${label}: the root changed`);
        assertOutsideUntouched(label);
      }
    }
  });

  it('READ_REQUEST never reads through a symlink inside the root', async () => {
    for (const item of [
      { fileId: 1, entry: fileEntry('leak', SECRET.length), destPath: Buffer.from('x') },
      { fileId: 2, entry: fileEntry('leak', SECRET.length), destPath: Buffer.from('x'), chunk: true, offset: 0, length: SECRET.length, transferId: 'leak' },
    ]) {
      const c = await open(agent.port, true);
      c.send(frame(MsgType.READ_REQUEST, { requestId: 1, items: [item] }));
      await c.until(() => c.frames.some((f) => f.type === MsgType.RESULT && (f.header as Result).requestId === 1) || c.closed, ANSWER_MS);
      const leaked = c.frames.filter((f) => f.type === MsgType.DATA).map((f) => f.payload.toString());
      assert.deepEqual(leaked, [], `the agent sent the content of ${path.join(outside, 'secret.txt')} through the link "leak" (${item.chunk ? 'as a chunk' : 'as a whole file'}): ${describeFrames(c.frames)}`);
      const failed = c.frames.find((f) => f.type === MsgType.RESULT && (f.header as Result).fileId === item.fileId);
      assert.ok(failed && !(failed.header as Result).ok, `reading through the link must fail: ${describeFrames(c.frames)}`);
      assert.ok(await c.finish(CLOSE_MS));
    }
    assertOutsideUntouched('READ_REQUEST through a link');
  });

  it('unknown hash algorithms and compressions are refused without bringing the agent down', async () => {
    const e = (p: string, size: number): object => fileEntry(p, size);
    const cases: Array<[string, Buffer[]]> = [
      ['FILE_BEGIN with hash algorithm "md5"', [
        frame(MsgType.FILE_BEGIN, { fileId: 1, entry: e('fuzz/alg1.txt', 2), hashAlgo: 'md5' }),
        frame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: 2 }, Buffer.from('hi')),
        frame(MsgType.FILE_END, { fileId: 1, hash: Buffer.alloc(16) }),
      ]],
      ['CHUNK_BEGIN with hash algorithm "md5"', [
        frame(MsgType.CHUNK_BEGIN, { fileId: 2, entry: e('fuzz/alg2.bin', 4), offset: 0, length: 4, transferId: 'alg2', hashAlgo: 'md5' }),
        frame(MsgType.DATA, { fileId: 2, offset: 0, rawLength: 4 }, Buffer.from('abcd')),
        frame(MsgType.CHUNK_END, { fileId: 2, offset: 0, hash: Buffer.alloc(16) }),
      ]],
      ['FILE_BEGIN with verify algorithm "md5"', [
        frame(MsgType.FILE_BEGIN, { fileId: 3, entry: e('fuzz/alg3.txt', 2), verify: true, verifyAlgo: 'md5' }),
        frame(MsgType.DATA, { fileId: 3, offset: 0, rawLength: 2 }, Buffer.from('hi')),
        frame(MsgType.FILE_END, { fileId: 3, verifyHash: Buffer.alloc(16) }),
      ]],
      ['DATA with compression 7', [
        frame(MsgType.FILE_BEGIN, { fileId: 4, entry: e('fuzz/alg4.txt', 2) }),
        frame(MsgType.DATA, { fileId: 4, offset: 0, rawLength: 2, compression: 7 }, Buffer.from('hi')),
        frame(MsgType.FILE_END, { fileId: 4 }),
      ]],
      ['READ_REQUEST with hash algorithm "md5"', [frame(MsgType.READ_REQUEST, { requestId: 5, hashAlgo: 'md5', items: [{ fileId: 5, entry: e('fuzz/victim', 6), destPath: Buffer.from('x') }] })]],
      ['LIST_REQUEST with hash algorithm "md5"', [frame(MsgType.LIST_REQUEST, { requestId: 6, path: Buffer.from('keep'), recursive: true, wantHashes: true, hashAlgo: 'md5' })]],
    ];
    for (const [what, frames] of cases) {
      const c = await open(agent.port, true);
      for (const f of frames) c.send(f);
      const answered = await c.until(
        () => c.frames.some((f) => f.type === MsgType.ERROR || (f.type === MsgType.RESULT && !(f.header as Result).ok) || f.type === MsgType.MANIFEST) || c.closed,
        ANSWER_MS,
      );
      // give a crash a moment to happen before looking
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(agentAlive(agent), `${what} brought the agent down:\n${clip(agent.stderr())}`);
      assert.ok(answered && c.frames.length > 1, `${what}: no answer (${describeFrames(c.frames)})`);
      assert.ok(await c.finish(CLOSE_MS), `${what}: connection not closed`);
    }
    const written = [...listFiles(path.join(root, 'fuzz')).keys()].filter((f) => f.startsWith('alg'));
    assert.deepEqual(written, [], 'files whose transfer was refused appeared under their final names');
  });

  it(`${ITERATIONS} random and mutated inputs (seed ${SEED}): no crash, each connection ends; a concurrent push succeeds`, async (tc) => {
    const tpl = templates();
    const keepBefore = fingerprint(path.join(root, 'keep'));
    // an honest client working while the fuzzing goes on
    const honest = runCliBounded([path.join(work, 'src'), `127.0.0.1:${agent.port}:/honest-during`], CLI_MS);
    const problems: string[] = [];
    let next = 0;
    let fatalChecked = 0;
    // A crash is reported once, with the inputs in flight at the time; the agent is restarted
    // (a few times at most) so one run can show several distinct crashes.
    const inFlight = new Set<string>();
    const reported = new WeakSet<RunningAgent>();
    let restarts = 0;
    let restarting: Promise<void> | undefined;
    const onCrash = (dead: RunningAgent): Promise<void> => {
      if (reported.has(dead)) return restarting ?? Promise.resolve();
      reported.add(dead);
      restarting ??= (async () => {
        problems.push(`the agent died while these inputs were in flight:\n  ${[...inFlight].join('\n  ')}\nagent stderr:\n${clip(dead.stderr())}`);
        if (++restarts <= 3) agent = await startAgent(root);
      })().finally(() => (restarting = undefined));
      return restarting;
    };
    const runOne = async (i: number): Promise<void> => {
      const k = makeCase(i, tpl);
      const label = `iteration ${i} (${k.kind}: ${k.how}; bytes ${clip(k.bytes.subarray(0, 64).toString('hex'))}${k.bytes.length > 64 ? '…' : ''})`;
      const mine = agent;
      inFlight.add(label);
      let c: RawConn | undefined;
      try {
        c = await open(mine.port, k.withHello);
        c.send(k.bytes);
        const p = predict(k.bytes);
        if (p.error && p.frames.length === 0) {
          // the very first frame breaks the framing: the agent's decoder must say so and hang up
          await expectFatal(c, p.error.code, label);
          fatalChecked++;
          return;
        }
        if (!(await c.finish(CLOSE_MS))) problems.push(`${label}: the connection was not closed within ${CLOSE_MS} ms after the client ended it (got: ${describeFrames(c.frames)})`);
        if (c.decodeError) problems.push(`${label}: the agent's reply does not decode: ${c.decodeError.message}`);
        const fatal = c.frames.find((f) => f.type === MsgType.ERROR && (f.header as ErrorMsg).fatal);
        if (fatal && c.frames.indexOf(fatal) !== c.frames.length - 1) problems.push(`${label}: frames after a fatal ERROR: ${describeFrames(c.frames)}`);
      } catch (e) {
        // failures caused by a crash are covered by the crash report; the exit may be noticed
        // a little after the connection broke
        await waitFor(() => !agentAlive(mine), 300);
        if (agentAlive(mine)) problems.push(`${label}: ${(e as Error).message}`);
      } finally {
        c?.destroy();
        if (!agentAlive(mine) && mine === agent) await onCrash(mine);
        inFlight.delete(label);
      }
    };
    const lanes = Array.from({ length: PARALLEL }, async () => {
      while (next < ITERATIONS && restarts <= 3) {
        await restarting;
        await runOne(next++);
      }
    });
    await Promise.all(lanes);
    const r = await honest;
    assert.deepEqual(problems, [], problems.join('\n\n'));
    assert.ok(agentAlive(agent), `the agent died:\n${clip(agent.stderr())}`);
    tc.diagnostic(`${fatalChecked} of ${ITERATIONS} inputs broke the framing at once (checked for the exact ERROR); the rest decoded at least one frame or stopped mid-frame`);
    assert.ok(fatalChecked > ITERATIONS / 10, `only ${fatalChecked} inputs broke the framing outright: the mix is off`);
    assert.ok(fatalChecked < ITERATIONS * 0.7, `${fatalChecked} of ${ITERATIONS} inputs never got past the framing: the handlers are hardly exercised`);
    assert.ok(!r.timedOut, 'the push that ran during the fuzzing hung');
    assert.equal(r.code, 0, `the push that ran during the fuzzing failed:\n${clip(r.stderr)}`);
    const src = listFiles(path.join(work, 'src'));
    for (const [rel, abs] of src) assert.equal(sha256File(path.join(root, 'honest-during', rel)), sha256File(abs), rel);
    assert.deepEqual(fingerprint(path.join(root, 'keep')), keepBefore, 'the fuzzing touched files outside fuzz/');
    assertOutsideUntouched('fuzzing');
  });

  it('afterwards an honest client pushes and pulls, and nothing outside the root changed', async () => {
    assert.ok(agentAlive(agent), `the agent died:\n${clip(agent.stderr())}`);
    const push = await runCliBounded([path.join(work, 'src'), `127.0.0.1:${agent.port}:/honest-after`], CLI_MS);
    assert.equal(push.code, 0, clip(push.stderr));
    const back = path.join(work, 'back');
    const pull = await runCliBounded([`127.0.0.1:${agent.port}:/honest-after`, back], CLI_MS);
    assert.equal(pull.code, 0, clip(pull.stderr));
    assert.deepEqual(fingerprint(back), fingerprint(path.join(work, 'src')));
    assertOutsideUntouched('after');
    assert.ok(agentAlive(agent));
  });

  it('a client that keeps its side open after a fatal error is still disconnected', async () => {
    const c = await open(agent.port, true);
    c.send(frame(MsgType.DATA, { fileId: 1, offset: 0, rawLength: 1 }, Buffer.from('x')));
    assert.ok(await c.until(() => c.frames.some((f) => f.type === MsgType.ERROR), ANSWER_MS), describeFrames(c.frames));
    assert.ok(await c.agentDone(CLOSE_MS), 'the agent did not end the connection');
    // we never end our side: the agent must still let go of the socket on its own
    assert.ok(await c.released(3 * CLOSE_MS), `the agent sent ERROR and FIN but still holds the socket open ${3 * CLOSE_MS} ms later`);
  });

  it('SIGTERM stops an agent cleanly, even while a silent client holds a connection', async () => {
    // a fresh agent, so that nothing earlier tests did can hold it up
    const fresh = await startAgent(root);
    let held: RawConn;
    try {
      held = await open(fresh.port, true);
    } catch (e) {
      await fresh.stop('SIGKILL');
      throw e;
    }
    // stop() sends SIGKILL after 10 s, and then the exit code is null
    const code = await fresh.stop('SIGTERM');
    assert.equal(code, 0, `the agent did not exit on SIGTERM while a client held a connection (client saw FIN: ${held.ended}, close: ${held.closed}):\n${clip(fresh.stderr())}`);
  });
});
