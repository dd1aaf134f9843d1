import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Compression, DeltaOpKind, EntryType, MESSAGE_NAMES, MsgType, messageType, protoEnum, type MsgTypeValue } from '../src/index.js';
import { samples } from './helpers/samples.js';

describe('schema', () => {
  it('MsgType mirrors the proto enum', () => {
    const proto = { ...protoEnum('MsgType') };
    assert.equal(proto.MSG_UNKNOWN, 0);
    delete proto.MSG_UNKNOWN;
    assert.deepEqual(proto, { ...MsgType });
  });

  it('EntryType, Compression and DeltaOpKind mirror the proto enums', () => {
    assert.deepEqual({ ...protoEnum('EntryType') }, {
      ENTRY_UNKNOWN: EntryType.UNKNOWN,
      FILE: EntryType.FILE,
      DIRECTORY: EntryType.DIRECTORY,
      SYMLINK_ENTRY: EntryType.SYMLINK,
      OTHER: EntryType.OTHER,
    });
    assert.deepEqual({ ...protoEnum('Compression') }, { ...Compression });
    assert.deepEqual({ ...protoEnum('DeltaOpKind') }, { ...DeltaOpKind });
  });

  it('the TypeScript shapes list exactly the proto fields of each header', () => {
    for (const type of Object.values(MsgType) as MsgTypeValue[]) {
      const t = messageType(MESSAGE_NAMES[type]);
      assert.deepEqual(Object.keys(samples[type]).sort(), t.fieldsArray.map((f) => f.name).sort(), MESSAGE_NAMES[type]);
    }
    const entry = samples[MsgType.FILE_BEGIN].entry!;
    assert.deepEqual(Object.keys(entry).sort(), messageType('Entry').fieldsArray.map((f) => f.name).sort());
  });
});
