import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FrameDecoder,
  HandlerTable,
  MsgType,
  PathEscapeError,
  ProtocolError,
  SmartcopyError,
  encodeFrame,
  errorFrame,
  errorFromFrame,
  fromErrorInfo,
  msgTypeName,
  type Frame,
} from '../src/index.js';

function decodeOne(parts: Buffer[]): Frame {
  const frames = new FrameDecoder().push(Buffer.concat(parts));
  assert.equal(frames.length, 1);
  return frames[0]!;
}

describe('HandlerTable', () => {
  it('routes frames to the handler of their type with the context', async () => {
    const seen: string[] = [];
    const table = new HandlerTable<{ name: string }>()
      .on(MsgType.PING, (f, ctx) => {
        seen.push(`ping ${f.header.nonce} ${ctx.name}`);
      })
      .on(MsgType.DATA, async (f, ctx) => {
        await Promise.resolve();
        seen.push(`data ${f.header.fileId} ${f.payload.length} ${ctx.name}`);
      });
    table.dispatch(decodeOne(encodeFrame(MsgType.PING, { nonce: 9 })), { name: 'a' });
    const p = table.dispatch(decodeOne(encodeFrame(MsgType.DATA, { fileId: 3 }, Buffer.alloc(4))), { name: 'b' });
    assert.ok(p instanceof Promise);
    await p;
    assert.deepEqual(seen, ['ping 9 a', 'data 3 4 b']);
  });

  it('throws SC_ERR_PROTOCOL for a type nobody handles', () => {
    const table = new HandlerTable<null>('waiting for Welcome').on(MsgType.WELCOME, () => {});
    assert.throws(
      () => table.dispatch(decodeOne(encodeFrame(MsgType.DATA, {})), null),
      (e: unknown) =>
        e instanceof ProtocolError && e.code === 'SC_ERR_PROTOCOL' && /^unexpected DATA frame/.test(e.message) && /waiting for Welcome/.test(e.message),
    );
  });

  it('off() removes a handler; on() replaces one', () => {
    let which = '';
    const table = new HandlerTable<null>().on(MsgType.BYE, () => void (which = 'first')).on(MsgType.BYE, () => void (which = 'second'));
    table.dispatch(decodeOne(encodeFrame(MsgType.BYE, {})), null);
    assert.equal(which, 'second');
    assert.ok(table.has(MsgType.BYE));
    table.off(MsgType.BYE);
    assert.ok(!table.has(MsgType.BYE));
    assert.throws(() => table.dispatch(decodeOne(encodeFrame(MsgType.BYE, {})), null), { code: 'SC_ERR_PROTOCOL' });
  });

  it('names frame types', () => {
    assert.equal(msgTypeName(MsgType.FILE_BEGIN), 'FILE_BEGIN');
    assert.equal(msgTypeName(MsgType.ERROR), 'ERROR');
    assert.equal(msgTypeName(99), 'TYPE_99');
  });
});

describe('error frames', () => {
  it('carry code, message and path across the wire', () => {
    const f = decodeOne(errorFrame(new PathEscapeError('../../etc/passwd', 'leaves the root'), true));
    assert.equal(f.type, MsgType.ERROR);
    assert.equal(f.header.fatal, true);
    assert.equal(f.header.error.codeName, 'SC_ERR_PATH_ESCAPE');
    const err = errorFromFrame(f.header);
    assert.ok(err instanceof SmartcopyError);
    assert.equal(err.code, 'SC_ERR_PATH_ESCAPE');
    assert.equal(err.path, '../../etc/passwd');
    assert.match(err.message, /leaves the root/);
  });

  it('turn foreign errors into SC_ERR_INTERNAL and keep non-fatal flag', () => {
    const f = decodeOne(errorFrame(new TypeError('boom'), false));
    assert.equal(f.header.fatal, false);
    const err = errorFromFrame(f.header);
    assert.equal(err.code, 'SC_ERR_INTERNAL');
    assert.equal(err.message, 'boom');
    assert.equal(err.path, undefined);
  });

  it('map unknown wire codes to SC_ERR_PROTOCOL and a missing ErrorInfo to an error too', () => {
    const f = decodeOne(encodeFrame(MsgType.ERROR, { error: { code: 9999, message: 'from the future' } }));
    assert.equal(errorFromFrame(f.header).code, 'SC_ERR_PROTOCOL');
    const g = decodeOne(encodeFrame(MsgType.ERROR, { fatal: true }));
    assert.equal(errorFromFrame(g.header).code, 'SC_ERR_PROTOCOL');
    assert.equal(fromErrorInfo(null).code, 'SC_ERR_PROTOCOL');
  });

  it('cut very long messages so the frame stays small', () => {
    const parts = errorFrame(new SmartcopyError('SC_ERR_IO', 'x'.repeat(1_000_000)), false);
    assert.ok(parts[0]!.length < 10_000);
  });
});
