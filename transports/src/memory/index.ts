import { SmartcopyError } from '@smartcopy/protocol';
import { AbstractConnection, abortReason } from '../abstract-connection.js';
import type { Listener, ListenOptions, Stream, Transport, TransportFeatures } from '../types.js';
import { createMemoryPair } from './memory-stream.js';

export { createMemoryPair, MemoryStream } from './memory-stream.js';

export const MEMORY_FEATURES: TransportFeatures = Object.freeze({ sameHost: true, multiplexed: true, encrypted: false });

export interface MemoryTransportInit {
  highWaterMark?: number;
  maxBuffered?: number;
}

interface Registered {
  readonly name: string;
  readonly init: MemoryTransportInit;
  readonly onStream: (stream: Stream) => void;
  readonly accepted: Set<Stream>;
}

/** Process-local "network": listener name → listener. */
const registry = new Map<string, Registered>();
let anonymous = 0;

function noListener(name: string): SmartcopyError {
  return new SmartcopyError('SC_ERR_CONNECT', `cannot connect to memory:${name}: nothing is listening under that name`, {
    retryable: true,
  });
}

class MemoryConnection extends AbstractConnection {
  readonly features = MEMORY_FEATURES;
  readonly #name: string;
  readonly #init: MemoryTransportInit;

  constructor(name: string, init: MemoryTransportInit) {
    super(`memory:${name}`);
    this.#name = name;
    this.#init = init;
  }

  protected override async newStream(): Promise<Stream> {
    const listener = registry.get(this.#name);
    if (listener === undefined) throw noListener(this.#name);
    const [client, server] = createMemoryPair({ ...this.#init, id: `${this.#name}#${++anonymous}` });
    listener.accepted.add(server);
    void server.closed.then(() => listener.accepted.delete(server));
    // the agent learns of the stream asynchronously, as it would from accept()
    queueMicrotask(() => {
      try {
        listener.onStream(server);
      } catch (err) {
        server.abort(err instanceof Error ? err : undefined);
      }
    });
    return client;
  }
}

/** In-process transport: `listen({host: name})` registers a name, `dial(name)` reaches it. */
export function memoryTransport(init: MemoryTransportInit = {}): Transport {
  return {
    kind: 'memory',
    features: MEMORY_FEATURES,

    async dial(address, opts = {}) {
      const name = address.startsWith('memory:') ? address.slice('memory:'.length) : address;
      if (opts.signal?.aborted) throw abortReason(opts.signal, `connect to memory:${name}`);
      if (!registry.has(name)) throw noListener(name);
      return new MemoryConnection(name, init);
    },

    async listen(opts: ListenOptions, onStream): Promise<Listener> {
      const name = opts.host ?? `anonymous-${++anonymous}`;
      if (registry.has(name)) {
        throw new SmartcopyError('SC_ERR_CONNECT', `cannot listen on memory:${name}: the name is already in use`);
      }
      const entry: Registered = { name, init, onStream, accepted: new Set() };
      registry.set(name, entry);
      const listener: Listener = {
        address: name,
        port: 0,
        async close(closeOpts = {}) {
          if (registry.get(name) === entry) registry.delete(name);
          opts.signal?.removeEventListener('abort', onAbort);
          if (closeOpts.abortStreams) {
            const err = new SmartcopyError('SC_ERR_ABORTED', `listener memory:${name} closed`);
            for (const s of entry.accepted) s.abort(err);
          }
        },
      };
      const onAbort = (): void => void listener.close();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) await listener.close();
      return listener;
    },
  };
}
