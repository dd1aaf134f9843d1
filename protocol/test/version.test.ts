import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  FEATURE_DELTA,
  FEATURE_LZ4,
  FEATURE_NATIVE_COPY,
  FEATURE_RESUME,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ProtocolError,
  SOFTWARE_VERSION,
  SUPPORTED_FEATURES,
  hasFeature,
  negotiate,
} from '../src/index.js';

const ours = { version: PROTOCOL_VERSION, minVersion: MIN_PROTOCOL_VERSION, features: SUPPORTED_FEATURES };

describe('negotiate', () => {
  it('agrees with itself on the current version and every feature', () => {
    assert.deepEqual(negotiate(ours, ours), { version: PROTOCOL_VERSION, features: [...SUPPORTED_FEATURES] });
  });

  it('picks the highest version both accept and the common features in local order', () => {
    const local = { version: 5, minVersion: 2, features: [FEATURE_LZ4, FEATURE_DELTA, FEATURE_RESUME, FEATURE_LZ4] };
    const remote = { version: 3, minVersion: 1, features: [FEATURE_RESUME, 'future-thing', FEATURE_LZ4] };
    const n = negotiate(local, remote);
    assert.deepEqual(n, { version: 3, features: [FEATURE_LZ4, FEATURE_RESUME] });
    assert.ok(hasFeature(n, FEATURE_LZ4));
    assert.ok(!hasFeature(n, FEATURE_NATIVE_COPY));
  });

  it('fails with SC_ERR_PROTOCOL_VERSION naming both ranges when they do not overlap', () => {
    assert.throws(
      () => negotiate({ version: 2, minVersion: 1, features: [] }, { version: 7, minVersion: 5, features: [] }),
      (e: unknown) => {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.code, 'SC_ERR_PROTOCOL_VERSION');
        assert.equal(e.exitCode, 2);
        assert.match(e.message, /versions 1\.\.2/);
        assert.match(e.message, /versions 5\.\.7/);
        return true;
      },
    );
  });

  it('fails when the peer sent no version at all', () => {
    assert.throws(() => negotiate(ours, { version: 0, minVersion: 0, features: [] }), { code: 'SC_ERR_PROTOCOL_VERSION' });
  });
});

describe('version constants', () => {
  it('SOFTWARE_VERSION matches package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(SOFTWARE_VERSION, pkg.version);
  });

  it('MIN_PROTOCOL_VERSION <= PROTOCOL_VERSION', () => {
    assert.ok(MIN_PROTOCOL_VERSION <= PROTOCOL_VERSION);
  });
});
