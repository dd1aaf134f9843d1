import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket, type Clock } from '../src/transfer/throttle.js';

/** Simulated time: sleeping advances it, nothing waits for real. */
function fakeClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms / 1000;
    },
  };
  return c;
}

describe('TokenBucket (--bandwidth-limit)', () => {
  it('holds 100 MiB/s over 10 s of 1 MiB blocks from 4 streams within 10 %', async () => {
    const clock = fakeClock();
    const rate = 100 * 1024 * 1024;
    const bucket = new TokenBucket(rate, clock);
    let sent = 0;
    const stream = async (): Promise<void> => {
      while (clock.t < 10) {
        await bucket.take(1 << 20);
        sent += 1 << 20;
      }
    };
    await Promise.all([stream(), stream(), stream(), stream()]);
    const achieved = sent / clock.t;
    assert.ok(Math.abs(achieved - rate) / rate < 0.1, `achieved ${(achieved / 1048576).toFixed(1)} MiB/s`);
  });

  it('a slow sender does not bank more than a quarter second of burst', async () => {
    const clock = fakeClock();
    const rate = 10 * 1024 * 1024;
    const bucket = new TokenBucket(rate, clock);
    clock.t += 60; // a minute idle
    const start = clock.t;
    for (let i = 0; i < 20; i++) await bucket.take(1 << 20); // 20 MiB
    // at most 2.5 MiB could go without waiting: 17.5 MiB needs >= 1.75 s
    assert.ok(clock.t - start >= 1.7, `waited ${(clock.t - start).toFixed(2)} s`);
  });

  it('an abort ends the wait', async () => {
    const bucket = new TokenBucket(1024); // 1 KiB/s: a 1 MiB take waits ~17 minutes
    const ac = new AbortController();
    const p = bucket.take(1 << 20, ac.signal);
    ac.abort();
    await assert.rejects(p, { code: 'SC_ERR_INTERRUPTED' });
  });

  it('refuses a zero rate', () => {
    assert.throws(() => new TokenBucket(0), { code: 'SC_ERR_USAGE' });
  });
});
