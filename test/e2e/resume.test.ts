import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../fixtures/agent.js';
import { collect, runCli, startCli, summary } from '../fixtures/cli.js';
import { cleanup, partFiles, pseudoRandom, tempDir, writeFile } from '../fixtures/tree.js';

const SIZE = 100 * 1024 * 1024 + 777; // four 32 MiB chunks, the last one short
const CHUNK = 32 * 1024 * 1024;

/** Lines of every chunk record (.sc-part.chunks) under root. */
function chunkRecords(root: string): number {
  let n = 0;
  for (const f of partFiles(root)) {
    if (f.endsWith('.chunks')) n += fs.readFileSync(path.join(root, f), 'utf8').split('\n').filter((l) => l.trim()).length;
  }
  return n;
}

/** Start a slow transfer and kill the client once `root` holds a verified chunk. */
async function interruptAfterFirstChunk(args: string[], root: string): Promise<void> {
  const child = startCli(args);
  const done = collect(child);
  const t0 = Date.now();
  while (chunkRecords(root) === 0) {
    if (child.exitCode !== null) throw new Error(`transfer ended before it could be interrupted: ${(await done).stderr}`);
    if (Date.now() - t0 > 60_000) {
      child.kill('SIGKILL');
      throw new Error('no chunk was recorded within 60 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL'); // a killed client: nothing gets to clean up
  await done;
}

describe('resume of interrupted large transfers', () => {
  let src: string;
  let root: string;
  let work: string;
  let agent: RunningAgent;
  let data: Buffer;
  before(async () => {
    src = tempDir('res-src');
    root = tempDir('res-root');
    work = tempDir('res-work');
    data = pseudoRandom(SIZE, 4242);
    writeFile(src, 'big.img', data);
    writeFile(root, 'served/big.img', data);
    agent = await startAgent(root);
  });
  after(async () => {
    await agent.stop();
    cleanup(src, root, work);
  });

  it('push: the rerun sends only the chunks the agent does not hold, and the file checks whole', async () => {
    await interruptAfterFirstChunk([path.join(src, 'big.img'), `127.0.0.1:${agent.port}:/up/big.img`, '--bandwidth-limit', '24M', '--streams', '2'], root);
    assert.ok(!fs.existsSync(path.join(root, 'up/big.img')), 'nothing under the final name');
    assert.ok(partFiles(path.join(root, 'up')).some((f) => f.endsWith('.sc-part')), 'the .part is kept for resume');
    const r = await runCli([path.join(src, 'big.img'), `127.0.0.1:${agent.port}:/up/big.img`, '--streams', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    assert.ok((s.bytesResumed as number) >= CHUNK, `resumed ${s.bytesResumed} bytes`);
    assert.ok((s.bytesOnWire as number) < SIZE - CHUNK / 2, `sent ${s.bytesOnWire} of ${SIZE} bytes`);
    assert.ok(fs.readFileSync(path.join(root, 'up/big.img')).equals(data));
    assert.deepEqual(partFiles(path.join(root, 'up')), [], 'part and chunk record are gone after the commit');
  });

  it('push: a kept chunk that no longer matches the source is sent again', async () => {
    await interruptAfterFirstChunk([path.join(src, 'big.img'), `127.0.0.1:${agent.port}:/up2/big.img`, '--bandwidth-limit', '24M', '--streams', '1'], root);
    // Corrupt the kept .part where the first chunk was recorded: its recorded hash no longer
    // matches our source range, so the chunk must travel again.
    const part = partFiles(path.join(root, 'up2')).find((f) => f.endsWith('.sc-part'))!;
    const fd = fs.openSync(path.join(root, 'up2', part), 'r+');
    fs.writeSync(fd, Buffer.from('corrupted!'), 0, 10, 100);
    fs.closeSync(fd);
    const kept = chunkRecords(path.join(root, 'up2'));
    const r = await runCli([path.join(src, 'big.img'), `127.0.0.1:${agent.port}:/up2/big.img`, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((summary(r.stdout).bytesResumed as number) <= (kept - 1) * CHUNK, 'the damaged chunk is not offered for resume');
    assert.ok(fs.readFileSync(path.join(root, 'up2/big.img')).equals(data), 'the result is the source, byte for byte');
  });

  it('pull: the rerun asks only for missing chunks, and the file is checked against the source', async () => {
    const dst = path.join(work, 'down');
    fs.mkdirSync(dst);
    await interruptAfterFirstChunk([`127.0.0.1:${agent.port}:/served/big.img`, path.join(dst, 'big.img'), '--bandwidth-limit', '24M', '--streams', '2'], dst);
    assert.ok(!fs.existsSync(path.join(dst, 'big.img')));
    const r = await runCli([`127.0.0.1:${agent.port}:/served/big.img`, path.join(dst, 'big.img'), '--streams', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = summary(r.stdout);
    assert.ok((s.bytesResumed as number) >= CHUNK, `resumed ${s.bytesResumed}`);
    assert.ok((s.bytesOnWire as number) < SIZE - CHUNK / 2, `received ${s.bytesOnWire} of ${SIZE}`);
    assert.ok(fs.readFileSync(path.join(dst, 'big.img')).equals(data));
    assert.deepEqual(partFiles(dst), []);
  });
});
