import fs from 'node:fs/promises';
import path from 'node:path';
import { Agent } from '@smartcopy/agent';
import { ConnectionPool, memoryTransport, poolKey, tcpTransport, type Connection, type Listener } from '@smartcopy/transports';
import type { Target } from './targets.js';
import { agentRelative } from './targets.js';

/** One side of a session reached through a transport: where its root is and how to close it. */
export interface Endpoint {
  conn: Connection;
  /** the path of the user's operand under the peer's root ('' = the root itself) */
  prefix: Buffer;
  /** how to name this endpoint in messages */
  display: string;
  /** streams may be kept for another session on this connection (a pooled connection) */
  recycle?: boolean;
  /** `reusable: false`: the session failed; do not keep the connection */
  close(reusable?: boolean): Promise<void>;
}

let memorySeq = 0;

/**
 * A local directory served by an in-process agent over the memory transport: local copies run
 * the same session as remote ones. The agent's root is the operand's parent directory (after
 * resolving symlinks, like cp and rsync follow a destination that is a link to a directory);
 * a missing operand is created under its nearest existing ancestor.
 */
export async function openLocal(p: string): Promise<Endpoint> {
  const { root, prefix } = await localRoot(p);
  const agent = await Agent.open({ root, sameHost: true, idleTimeoutMs: 0 });
  const transport = memoryTransport();
  const name = `local-${process.pid}-${++memorySeq}`;
  const listener: Listener = await transport.listen({ host: name }, (s) => agent.handleStream(s));
  const conn = await transport.dial(name);
  return {
    conn,
    prefix: Buffer.from(prefix),
    display: p,
    async close() {
      await conn.close().catch(() => {});
      await agent.close();
      await listener.close({ abortStreams: true });
    },
  };
}

export async function localRoot(p: string): Promise<{ root: string; prefix: string }> {
  const abs = path.resolve(p);
  const real = await fs.realpath(abs).catch(() => undefined);
  if (real !== undefined) {
    if (path.dirname(real) === real) return { root: real, prefix: '' };
    return { root: path.dirname(real), prefix: path.basename(real) };
  }
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    rest.unshift(path.basename(cur));
    cur = path.dirname(cur);
    const r = await fs.realpath(cur).catch(() => undefined);
    if (r !== undefined) return { root: r, prefix: rest.join('/') };
  }
}

/**
 * A remote agent. With a pool (the library API), the connection, and the streams whose sessions
 * ended cleanly, are kept for the next job to the same agent; otherwise they are closed.
 */
export async function openRemote(t: Extract<Target, { kind: 'tcp' }>, signal?: AbortSignal, pool?: ConnectionPool): Promise<Endpoint> {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const address = `${host}:${t.port}`;
  const prefix = Buffer.from(agentRelative(t.path));
  if (!pool) {
    const conn = await tcpTransport().dial(address, { signal });
    return {
      conn,
      prefix,
      display: t.display,
      async close() {
        await conn.close().catch(() => {});
      },
    };
  }
  const lease = await pool.acquire(poolKey('tcp', address), (sig) => tcpTransport().dial(address, { signal: sig }), { signal });
  return {
    conn: lease.conn,
    prefix,
    display: t.display,
    recycle: true,
    async close(reusable = true) {
      lease.release(reusable && !signal?.aborted);
    },
  };
}

export function joinRel(a: Uint8Array, b: Uint8Array): Buffer {
  if (a.length === 0) return Buffer.from(b);
  if (b.length === 0) return Buffer.from(a);
  return Buffer.concat([a, Buffer.from('/'), b]);
}
