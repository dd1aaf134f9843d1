import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orderedRules } from '../src/cli/options.js';
import { parseRate, parseSize } from '../src/cli/sizes.js';
import { agentRelative, parseTarget } from '../src/targets.js';

describe('command-line parsing', () => {
  it('keeps include/exclude order across both flags and both spellings', () => {
    assert.deepEqual(orderedRules(['a', '--include', '*.c', '--exclude=*.o', '--exclude', '*', 'b']), [
      { include: true, pattern: '*.c' },
      { include: false, pattern: '*.o' },
      { include: false, pattern: '*' },
    ]);
  });

  it('parses sizes and rates with binary units', () => {
    assert.equal(parseSize('4096', '--x'), 4096);
    assert.equal(parseSize('64K', '--x'), 65536);
    assert.equal(parseSize('1.5M', '--x'), 1572864);
    assert.equal(parseSize('2GiB', '--x'), 2 * 1024 ** 3);
    assert.equal(parseRate('100M', '--x'), 100 * 1024 ** 2);
    assert.throws(() => parseSize('lots', '--x'), { code: 'SC_ERR_USAGE' });
  });

  it('recognises local and agent targets', () => {
    assert.deepEqual(parseTarget('./data'), { kind: 'local', path: './data', trailingSlash: false });
    assert.equal(parseTarget('C:\\dir').kind, 'local');
    const t = parseTarget('host.lan:9878:/backup/');
    assert.equal(t.kind, 'tcp');
    if (t.kind === 'tcp') {
      assert.equal(t.host, 'host.lan');
      assert.equal(t.port, 9878);
      assert.equal(t.path, '/backup/');
      assert.equal(t.trailingSlash, true);
    }
    const u = parseTarget('tcp://[::1]:4000/x');
    assert.ok(u.kind === 'tcp' && u.host === '::1' && u.port === 4000 && u.path === '/x');
    const v = parseTarget('nas:/data', { tcpAgent: true });
    assert.ok(v.kind === 'tcp' && v.port === 9878 && v.path === '/data');
    assert.equal(parseTarget('nas:/data').kind, 'local');
  });

  it('keeps agent paths inside the agent root', () => {
    assert.equal(agentRelative('/backup/x/'), 'backup/x');
    assert.equal(agentRelative('/'), '');
    assert.throws(() => agentRelative('/a/../../etc'), { code: 'SC_ERR_PATH_ESCAPE' });
  });
});
