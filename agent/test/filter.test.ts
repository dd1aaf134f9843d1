import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRules } from '../src/scan/filter.js';

describe('filter rules (rsync semantics)', () => {
  it('includes everything without rules', () => {
    assert.ok(compileRules([])('any/thing', false));
  });
  it('first matching rule wins', () => {
    const f = compileRules([{ include: true, pattern: 'keep.txt' }, { include: false, pattern: '*.txt' }]);
    assert.ok(f('a/keep.txt', false));
    assert.ok(!f('a/other.txt', false));
    assert.ok(f('a/other.bin', false));
  });
  it('patterns without a slash match the name at any depth, including dotfiles', () => {
    const f = compileRules([{ include: false, pattern: '*.o' }]);
    assert.ok(!f('x.o', false));
    assert.ok(!f('deep/er/.hidden.o', false));
  });
  it('patterns with a slash match the path end; a leading slash anchors', () => {
    const f = compileRules([{ include: false, pattern: 'build/out' }]);
    assert.ok(!f('build/out', true));
    assert.ok(!f('x/build/out', true));
    const g = compileRules([{ include: false, pattern: '/build/out' }]);
    assert.ok(!g('build/out', true));
    assert.ok(g('x/build/out', true));
  });
  it('a trailing slash matches directories only; dir/*** covers the subtree', () => {
    const f = compileRules([{ include: false, pattern: 'cache/' }]);
    assert.ok(!f('a/cache', true));
    assert.ok(f('a/cache', false));
    const g = compileRules([{ include: false, pattern: 'tmp/***' }]);
    assert.ok(!g('tmp', true));
    assert.ok(!g('tmp/a/b', false));
    assert.ok(g('tmpx', false));
  });
});
