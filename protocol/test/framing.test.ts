import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FRAME_PREFIX_SIZE,
  FrameDecoder,
  MAX_FRAME_SIZE,
  MsgType,
  ProtocolError,
  encodeFrame,
  type Frame,
  type MsgTypeValue,
} from '../src/index.js';
import { plain, randomBytes, rng, samples } from './helpers/samples.js';

const ALL_TYPES = Object.values(MsgType) as MsgTypeValue[];

function collect(decoder: FrameDecoder, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) out.push(...decoder.push(c));
  decoder.end();
  return out;
}

function comparable(frames: Frame[]): unknown[] {
  return frames.map((f) => ({ type: f.type, header: plain(f.header), payload: f.payload.toString('hex') }));
}

function isProtocolError(code: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** A stream holding every frame type twice: once bare, once with a payload. */
function buildStream(): { bytes: Buffer; expected: unknown[] } {
  const next = rng(42);
  const parts: Buffer[] = [];
  const expected: unknown[] = [];
  for (const type of ALL_TYPES) {
    for (const withPayload of [false, true]) {
      const payload = withPayload ? randomBytes(next, 1 + ((next() * 300) | 0)) : undefined;
      parts.push(...encodeFrame(type, samples[type], payload));
      expected.push({ type, header: plain(samples[type]), payload: payload ? payload.toString('hex') : '' });
    }
  }
  return { bytes: Buffer.concat(parts), expected };
}

describe('encodeFrame', () => {
  it('lays out length, type, header length, header and payload', () => {
    const payload = Buffer.from('payload!');
    const parts = encodeFrame(MsgType.DATA, samples[MsgType.DATA], payload);
    assert.equal(parts.length, 2);
    const [head] = parts;
    assert.equal(parts[1], payload, 'the payload buffer itself, not a copy');
    const headerLength = head!.readUInt32BE(5);
    assert.equal(head!.length, FRAME_PREFIX_SIZE + headerLength);
    assert.equal(head!.readUInt32BE(0), 5 + headerLength + payload.length);
    assert.equal(head![4], MsgType.DATA);
  });

  it('returns the head alone when there is no payload or an empty one', () => {
    assert.equal(encodeFrame(MsgType.BYE, {}).length, 1);
    assert.equal(encodeFrame(MsgType.BYE, {}, Buffer.alloc(0)).length, 1);
    const bye = encodeFrame(MsgType.BYE, {})[0]!;
    assert.deepEqual([...bye], [0, 0, 0, 5, MsgType.BYE, 0, 0, 0, 0]);
  });

  it('wraps a plain Uint8Array payload without copying it', () => {
    const u8 = new Uint8Array([1, 2, 3]);
    const parts = encodeFrame(MsgType.DATA, { fileId: 1 }, u8);
    assert.equal(parts[1]!.buffer, u8.buffer);
    assert.ok(Buffer.isBuffer(parts[1]));
  });

  it('refuses to build a frame over MAX_FRAME_SIZE', () => {
    const big = Buffer.alloc(MAX_FRAME_SIZE);
    assert.throws(() => encodeFrame(MsgType.DATA, { fileId: 1 }, big), isProtocolError('SC_ERR_FRAME_TOO_LARGE'));
  });

  it('rejects an unknown frame type', () => {
    assert.throws(() => encodeFrame(99 as MsgTypeValue, {}), (e: unknown) => (e as { code?: string }).code === 'SC_ERR_INTERNAL');
  });
});

describe('FrameDecoder round trip', () => {
  for (const type of ALL_TYPES) {
    it(`type ${type} round-trips with and without payload`, () => {
      for (const payload of [undefined, Buffer.from('some raw bytes \x00\xff')]) {
        const d = new FrameDecoder();
        const frames = d.push(Buffer.concat(encodeFrame(type, samples[type], payload)));
        assert.equal(frames.length, 1);
        assert.equal(frames[0]!.type, type);
        assert.deepEqual(plain(frames[0]!.header), plain(samples[type]));
        assert.equal(frames[0]!.payload.toString('hex'), payload ? payload.toString('hex') : '');
        assert.equal(d.buffered, 0);
        // a decoded header can be sent on as it is
        const [again] = d.push(Buffer.concat(encodeFrame(type, frames[0]!.header, payload)));
        assert.deepEqual(plain(again!.header), plain(samples[type]));
      }
    });
  }

  it('reads absent fields as proto3 defaults', () => {
    const d = new FrameDecoder();
    const [f] = d.push(Buffer.concat(encodeFrame(MsgType.FILE_BEGIN, {})));
    const h = f!.header;
    assert.equal(h.fileId, 0);
    assert.equal(h.hashAlgo, '');
    assert.equal(h.verify, false);
    assert.equal(h.entry, null);
    assert.ok(Buffer.isBuffer(h.nativeSource) && h.nativeSource.length === 0);
    const [m] = d.push(Buffer.concat(encodeFrame(MsgType.MANIFEST, {})));
    assert.deepEqual(m!.header.entries, []);
    const [e] = d.push(Buffer.concat(encodeFrame(MsgType.MANIFEST, { entries: [{}] })));
    assert.deepEqual(plain(e!.header.entries[0]), {
      path: 'bytes:', type: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, mode: 0, linkTarget: 'bytes:', hash: 'bytes:', uid: 0, gid: 0,
    });
  });

  it('decodes 64-bit fields as numbers', () => {
    const d = new FrameDecoder();
    const [f] = d.push(Buffer.concat(encodeFrame(MsgType.DATA, { offset: 2 ** 53 - 1 })));
    assert.equal(typeof f!.header.offset, 'number');
    assert.equal(f!.header.offset, 2 ** 53 - 1);
    const [g] = d.push(Buffer.concat(encodeFrame(MsgType.MKDIR, { entry: { mtimeSec: -1234567890123 } })));
    assert.equal(g!.header.entry.mtimeSec, -1234567890123);
  });

  it('decodes a stream split at every byte boundary identically', () => {
    const { bytes, expected } = buildStream();
    for (let cut = 0; cut <= bytes.length; cut++) {
      const got = collect(new FrameDecoder(), [bytes.subarray(0, cut), bytes.subarray(cut)]);
      assert.deepEqual(comparable(got), expected, `split at ${cut}`);
    }
  });

  it('decodes a stream fed one byte at a time', () => {
    const { bytes, expected } = buildStream();
    const d = new FrameDecoder();
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
    assert.deepEqual(comparable(collect(d, chunks)), expected);
  });

  it('decodes random multi-splits identically', () => {
    const { bytes, expected } = buildStream();
    const big = Buffer.concat(encodeFrame(MsgType.DATA, samples[MsgType.DATA], randomBytes(rng(1), 200_000)));
    const stream = Buffer.concat([bytes, big, bytes]);
    const want = [...expected, ...comparable(new FrameDecoder().push(big)), ...expected];
    for (let seed = 1; seed <= 200; seed++) {
      const next = rng(seed);
      const cuts = new Set<number>();
      const n = 1 + ((next() * 40) | 0);
      while (cuts.size < n) cuts.add((next() * stream.length) | 0);
      const sorted = [...cuts].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const c of [...sorted, stream.length]) {
        chunks.push(stream.subarray(prev, c));
        prev = c;
      }
      assert.deepEqual(comparable(collect(new FrameDecoder(), chunks)), want, `seed ${seed}`);
    }
  });

  it('hands out payload and header bytes as views when the frame lies in one chunk', () => {
    const wire = Buffer.concat([
      ...encodeFrame(MsgType.PING, {}),
      ...encodeFrame(MsgType.FILE_BEGIN, samples[MsgType.FILE_BEGIN], Buffer.alloc(5000, 7)),
    ]);
    const chunk = Buffer.alloc(wire.length); // not from the shared pool, so buffer identity means "no copy"
    wire.copy(chunk);
    const frames = new FrameDecoder().push(chunk);
    assert.equal(frames.length, 2);
    assert.equal(frames[1]!.payload.buffer, chunk.buffer);
    assert.equal(frames[1]!.payload.length, 5000);
    assert.equal(frames[1]!.header.entry.path.buffer, chunk.buffer);
  });

  it('assembles a frame spanning chunks into one buffer of exactly its size', () => {
    const payload = randomBytes(rng(7), 70_000);
    const wire = Buffer.concat(encodeFrame(MsgType.DATA, samples[MsgType.DATA], payload));
    const d = new FrameDecoder();
    const chunks = [wire.subarray(0, 3), wire.subarray(3, 30_000), wire.subarray(30_000, 60_000), wire.subarray(60_000)];
    assert.deepEqual(d.push(chunks[0]!), []);
    assert.equal(d.buffered, 3);
    assert.deepEqual(d.push(chunks[1]!), []);
    assert.equal(d.buffered, 30_000);
    assert.deepEqual(d.push(chunks[2]!), []);
    const [f] = d.push(chunks[3]!);
    assert.equal(d.buffered, 0);
    assert.ok(f!.payload.equals(payload));
    for (const c of chunks) assert.notEqual(f!.payload.buffer, c.buffer);
    assert.equal(f!.payload.buffer.byteLength, wire.length - FRAME_PREFIX_SIZE);
  });

  it('accepts plain Uint8Array chunks', () => {
    const wire = Buffer.concat(encodeFrame(MsgType.PING, { nonce: 5 }));
    const u8 = new Uint8Array(wire.length);
    u8.set(wire);
    const [f] = new FrameDecoder().push(u8);
    assert.equal(f!.header.nonce, 5);
  });
});

describe('FrameDecoder rejects bad input', () => {
  it('rejects an oversize frame from the length prefix alone', () => {
    const d = new FrameDecoder();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FRAME_SIZE + 1);
    assert.throws(
      () => d.push(prefix),
      (e: unknown) => isProtocolError('SC_ERR_FRAME_TOO_LARGE')(e) && /16842753/.test((e as Error).message) && /16842752/.test((e as Error).message),
    );
  });

  it('honours a custom maxFrameSize', () => {
    const d = new FrameDecoder({ maxFrameSize: 100 });
    assert.throws(() => d.push(Buffer.concat(encodeFrame(MsgType.DATA, {}, Buffer.alloc(200)))), isProtocolError('SC_ERR_FRAME_TOO_LARGE'));
    const ok = new FrameDecoder({ maxFrameSize: 100 });
    assert.equal(ok.push(Buffer.concat(encodeFrame(MsgType.DATA, {}, Buffer.alloc(50)))).length, 1);
  });

  it('stays failed after an error', () => {
    const d = new FrameDecoder();
    let first: unknown;
    try {
      d.push(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    } catch (e) {
      first = e;
    }
    assert.ok(first instanceof ProtocolError);
    assert.throws(() => d.push(Buffer.concat(encodeFrame(MsgType.BYE, {}))), (e: unknown) => e === first);
    assert.throws(() => d.end(), (e: unknown) => e === first);
  });

  for (const type of [0, 30, 200, 255]) {
    it(`rejects unknown type ${type} as soon as the type byte arrives`, () => {
      const d = new FrameDecoder();
      assert.deepEqual(d.push(Buffer.from([0, 0, 0, 100])), []);
      assert.throws(() => d.push(Buffer.from([type])), isProtocolError('SC_ERR_MALFORMED_FRAME'));
    });
  }

  it('rejects a frame length below the 5-byte minimum', () => {
    assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 4])), isProtocolError('SC_ERR_MALFORMED_FRAME'));
  });

  it('rejects a header length beyond the frame', () => {
    const frame = Buffer.from([0, 0, 0, 10, MsgType.DATA, 0, 0, 0, 6, 0, 0, 0, 0, 0]);
    assert.throws(
      () => new FrameDecoder().push(frame.subarray(0, FRAME_PREFIX_SIZE)),
      (e: unknown) => isProtocolError('SC_ERR_MALFORMED_FRAME')(e) && /header length 6/.test((e as Error).message),
    );
  });

  it('rejects headers that do not decode', () => {
    const bad = [
      Buffer.from([0x0f]), // field 1, wire type 7
      Buffer.from([0x08, 0xff]), // varint cut short
      Buffer.from([0x12, 0x05, 0x01]), // length-delimited field longer than the header
      Buffer.alloc(200_000, 0x7b), // unknown field 15 as start-group, nested 200,000 deep
    ];
    for (const header of bad) {
      const frame = Buffer.alloc(FRAME_PREFIX_SIZE + header.length);
      frame.writeUInt32BE(5 + header.length, 0);
      frame[4] = MsgType.FILE_BEGIN;
      frame.writeUInt32BE(header.length, 5);
      header.copy(frame, FRAME_PREFIX_SIZE);
      assert.throws(() => new FrameDecoder().push(frame), isProtocolError('SC_ERR_MALFORMED_FRAME'), header.toString('hex'));
    }
  });

  it('end() in the middle of a frame is malformed; at a boundary it is fine', () => {
    const wire = Buffer.concat(encodeFrame(MsgType.DATA, samples[MsgType.DATA], Buffer.alloc(100)));
    for (const cut of [1, 4, 5, 9, 20, wire.length - 1]) {
      const d = new FrameDecoder();
      d.push(wire.subarray(0, cut));
      assert.throws(() => d.end(), (e: unknown) => isProtocolError('SC_ERR_MALFORMED_FRAME')(e) && /middle of a frame/.test((e as Error).message));
    }
    const d = new FrameDecoder();
    d.push(wire);
    d.end();
  });

  it('random garbage only ever raises ProtocolErrors', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const next = rng(seed);
      const garbage = randomBytes(next, 1 + ((next() * 2000) | 0));
      // A plausible prefix in front of half of them gets the garbage past the length check and into the header decoder.
      if (seed % 2 === 0 && garbage.length >= FRAME_PREFIX_SIZE) {
        garbage.writeUInt32BE(garbage.length - 4, 0);
        garbage[4] = 1 + (seed % 25);
        garbage.writeUInt32BE(Math.min(garbage.length - FRAME_PREFIX_SIZE, (next() * 64) | 0), 5);
      }
      const d = new FrameDecoder();
      try {
        for (let pos = 0; pos < garbage.length; ) {
          const n = 1 + ((next() * 300) | 0);
          d.push(garbage.subarray(pos, pos + n));
          pos += n;
        }
        d.end();
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `seed ${seed}: ${String(e)}`);
        assert.ok(['SC_ERR_MALFORMED_FRAME', 'SC_ERR_FRAME_TOO_LARGE'].includes(e.code), `seed ${seed}: ${e.code}`);
      }
    }
  });
});
