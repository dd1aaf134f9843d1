import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { xxhash64 as hwXXHash64 } from 'hash-wasm';
import { HASH_ALGOS, HASH_LENGTHS, createHasher, hashBuffer, initCodecs, xxh64, type HashAlgo } from '../src/index.js';
import { randomBytes, rng } from './helpers/samples.js';

const KNOWN: Record<HashAlgo, [string, string][]> = {
  xxhash64: [
    ['', 'ef46db3751d8e999'],
    ['abc', '44bc2cf5ad770999'],
  ],
  xxhash3: [
    ['', '2d06800538d394c2'],
    ['abc', '78af5f94892f3950'],
  ],
  blake3: [
    ['', 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
    ['abc', '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85'],
  ],
  sha256: [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ],
};

describe('hashes', () => {
  before(() => initCodecs());

  for (const algo of HASH_ALGOS) {
    it(`${algo}: known answers, one-shot and streaming`, async () => {
      for (const [input, hex] of KNOWN[algo]) {
        const data = Buffer.from(input);
        assert.equal((await hashBuffer(algo, data)).toString('hex'), hex, `hashBuffer(${JSON.stringify(input)})`);
        const h = await createHasher(algo);
        for (const byte of data) h.update(Buffer.from([byte]));
        const d = h.digest();
        assert.ok(Buffer.isBuffer(d));
        assert.equal(d.length, HASH_LENGTHS[algo]);
        assert.equal(d.toString('hex'), hex, `streaming ${JSON.stringify(input)}`);
      }
    });

    it(`${algo}: streaming in random pieces equals one-shot`, async () => {
      const next = rng(algo.length);
      const data = randomBytes(next, (1 << 20) + 3);
      const want = await hashBuffer(algo, data);
      for (let round = 0; round < 3; round++) {
        const h = await createHasher(algo);
        for (let pos = 0; pos < data.length; ) {
          const n = 1 + ((next() * 200_000) | 0);
          h.update(data.subarray(pos, pos + n));
          pos += n;
        }
        assert.ok(h.digest().equals(want), `round ${round}`);
      }
    });

    it(`${algo}: reused and interleaved hashers stay independent`, async () => {
      const a = Buffer.from('first file');
      const b = Buffer.from('second file, longer');
      const first = await createHasher(algo);
      const da = first.update(a).digest();
      const daCopy = Buffer.from(da);
      assert.throws(() => first.update(a), { code: 'SC_ERR_INTERNAL' });
      assert.throws(() => first.digest(), { code: 'SC_ERR_INTERNAL' });
      const x = await createHasher(algo);
      const y = await createHasher(algo);
      x.update(b.subarray(0, 5));
      y.update(a);
      x.update(b.subarray(5));
      assert.ok(y.digest().equals(daCopy));
      assert.ok(x.digest().equals(await hashBuffer(algo, b)));
      assert.ok(da.equals(daCopy), 'an earlier digest is not overwritten by reuse');
    });
  }

  it('xxh64 agrees with an independent implementation, seeds included', async () => {
    const next = rng(99);
    for (const size of [0, 1, 31, 32, 33, 4096, 100_003]) {
      const data = randomBytes(next, size);
      for (const seed of [0, 1, 0xdeadbeef]) {
        assert.equal(xxh64(data, seed).toString('hex'), await hwXXHash64(data, seed), `size ${size} seed ${seed}`);
      }
      assert.ok(xxh64(data).equals(await hashBuffer('xxhash64', data)));
    }
  });

  it('rejects an unknown algorithm', async () => {
    await assert.rejects(createHasher('md5' as HashAlgo), { code: 'SC_ERR_UNSUPPORTED' });
  });
});
