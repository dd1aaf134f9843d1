import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { runCli, summary } from '../fixtures/cli.js';
import { cleanup, pseudoRandom, tempDir } from '../fixtures/tree.js';

const SIZE = 8 * 1024 * 1024 + 4321;

/** Edited versions of a basis: scattered overwrites, an insertion, a deletion. */
function edits(basis: Buffer): Record<string, Buffer> {
  const overwrite = Buffer.from(basis);
  for (let i = 0; i < 20; i++) pseudoRandom(4096, 100 + i).copy(overwrite, ((i * 7919 * 4099) % (SIZE - 5000)) + 17);
  const mid = (SIZE >> 1) + 333;
  const insert = Buffer.concat([basis.subarray(0, mid), pseudoRandom(256 * 1024, 5), basis.subarray(mid)]);
  const del = Buffer.concat([basis.subarray(0, mid), basis.subarray(mid + 256 * 1024)]);
  return { overwrite, insert, delete: del };
}

function put(file: string, data: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
}

describe('--delta', () => {
  let work: string;
  let root: string;
  let agent: RunningAgent;
  let basis: Buffer;
  let changed: Record<string, Buffer>;
  before(async () => {
    work = tempDir('delta-work');
    root = tempDir('delta-root');
    basis = pseudoRandom(SIZE, 77);
    changed = edits(basis);
    for (const [name, data] of Object.entries(changed)) put(path.join(work, 'new', `${name}.bin`), data);
    agent = await startAgent(root);
  });
  after(async () => {
    await agent.stop();
    cleanup(work, root);
  });

  for (const name of ['overwrite', 'insert', 'delete']) {
    it(`local: ${name} rebuilds the new file from the old one plus literals`, async () => {
      const dst = path.join(work, `local-${name}.bin`);
      put(dst, basis);
      const r = await runCli([path.join(work, 'new', `${name}.bin`), dst, '--delta', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fs.readFileSync(dst).equals(changed[name]!));
      const s = summary(r.stdout);
      assert.ok((s.bytesMatched as number) > SIZE * 0.8, `matched ${s.bytesMatched}`);
      assert.ok((s.bytesLiteral as number) < SIZE * 0.15, `literal ${s.bytesLiteral}`);
    });

    it(`TCP push and pull: ${name} moves a small fraction of the file`, async () => {
      put(path.join(root, `p-${name}.bin`), basis);
      const push = await runCli([path.join(work, 'new', `${name}.bin`), `127.0.0.1:${agent.port}:/p-${name}.bin`, '--delta', '--json']);
      assert.equal(push.code, 0, push.stderr);
      assert.ok(fs.readFileSync(path.join(root, `p-${name}.bin`)).equals(changed[name]!));
      const ps = summary(push.stdout);
      assert.ok((ps.bytesOnWire as number) < SIZE * 0.15, `push wire ${ps.bytesOnWire}`);
      assert.ok((ps.speedup as number) > 5);

      const local = path.join(work, `pulled-${name}.bin`);
      put(local, basis);
      const pull = await runCli([`127.0.0.1:${agent.port}:/p-${name}.bin`, local, '--delta', '--json']);
      assert.equal(pull.code, 0, pull.stderr);
      assert.ok(fs.readFileSync(local).equals(changed[name]!));
      assert.ok((summary(pull.stdout).bytesOnWire as number) < SIZE * 0.15, `pull wire ${summary(pull.stdout).bytesOnWire}`);
    });
  }

  it('identical files are all matches; unrelated files are all literals; both come out right', async () => {
    const same = path.join(root, 'same.bin');
    put(same, changed.overwrite!);
    const r = await runCli([path.join(work, 'new', 'overwrite.bin'), `127.0.0.1:${agent.port}:/same.bin`, '--delta', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summary(r.stdout).bytesLiteral, 0);
    const other = path.join(root, 'other.bin');
    put(other, pseudoRandom(SIZE, 999));
    const o = await runCli([path.join(work, 'new', 'insert.bin'), `127.0.0.1:${agent.port}:/other.bin`, '--delta', '--json', '--compress']);
    assert.equal(o.code, 0, o.stderr);
    assert.ok(fs.readFileSync(other).equals(changed.insert!));
  });

  it('files below the delta threshold and new files go whole; --block-size needs --delta', async () => {
    put(path.join(root, 'tiny.bin'), Buffer.from('old'));
    fs.writeFileSync(path.join(work, 'tiny.bin'), 'new content');
    const r = await runCli([path.join(work, 'tiny.bin'), `127.0.0.1:${agent.port}:/tiny.bin`, '--delta', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(path.join(root, 'tiny.bin'), 'utf8'), 'new content');
    assert.equal(summary(r.stdout).bytesMatched, 0);
    assert.equal((await runCli([path.join(work, 'tiny.bin'), path.join(work, 'x'), '--block-size', '4K'])).code, 1);
    const b = await runCli([path.join(work, 'new', 'overwrite.bin'), `127.0.0.1:${agent.port}:/bs.bin`, '--delta', '--block-size', '4K']);
    assert.equal(b.code, 0, b.stderr);
  });
});

describe('--delta: the receiver checks its basis', () => {
  it('a basis that changed since its signature fails that file (and the client sends it whole)', async () => {
    const { RawConn } = await import('../fixtures/faults.js');
    const { encodeFrame, MsgType, PROTOCOL_VERSION } = await import('@smartcopy/protocol');
    const root = tempDir('delta-basis');
    const agent = await startAgent(root);
    const conn = await RawConn.connect(agent.port);
    try {
      put(path.join(root, 'b.bin'), pseudoRandom(200_000, 3));
      conn.send(encodeFrame(MsgType.HELLO, { version: PROTOCOL_VERSION, minVersion: 1, sessionId: 'basis-check', clientNonce: Buffer.alloc(32, 7), streamIndex: 0, streamCount: 1 }));
      assert.ok(await conn.frame(MsgType.WELCOME, 5000));
      // the signature the sender matched against described a 100,000-byte basis; the file has 200,000
      const entry = { path: Buffer.from('b.bin'), type: 1, size: 10, mtimeSec: 1, mode: 0o644 };
      conn.send(encodeFrame(MsgType.FILE_BEGIN, { fileId: 1, entry, hashAlgo: 'xxhash64', delta: true, deltaBlockSize: 700, deltaBasisSize: 100_000 }));
      conn.send(encodeFrame(MsgType.DELTA_OPS, { fileId: 1, ops: [{ kind: 1, length: 10 }], rawLength: 10 }, Buffer.alloc(10, 65)));
      conn.send(encodeFrame(MsgType.FILE_END, { fileId: 1, hash: Buffer.alloc(8) }));
      const res = await conn.frame(MsgType.RESULT, 5000);
      assert.ok(res, 'the receiver answers');
      assert.equal(res.header.ok, false);
      assert.equal(res.header.error.codeName, 'SC_ERR_CHECKSUM_MISMATCH');
      assert.equal(fs.statSync(path.join(root, 'b.bin')).size, 200_000, 'the old file is untouched');
    } finally {
      conn.destroy();
      await agent.stop();
      cleanup(root);
    }
  });
});
