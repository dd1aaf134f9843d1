import { SmartcopyError } from '@smartcopy/protocol';
import type { Quiche } from '@matrixai/quic/native/quiche.js';

export type { Quiche } from '@matrixai/quic/native/quiche.js';
export type {
  Config as NativeConfig,
  Connection as NativeConnection,
  ConnectionError as NativeConnectionError,
  Host as NativeHostPort,
  RecvInfo as NativeRecvInfo,
} from '@matrixai/quic/native/types.js';

let loading: Promise<Quiche> | undefined;

/**
 * The raw quiche binding of @matrixai/quic. Loaded on first use, not at import: the prebuilt
 * binary is an optional npm dependency, and a machine without it must still run every other
 * transport.
 */
export function loadQuiche(): Promise<Quiche> {
  loading ??= import('@matrixai/quic/native/index.js').then(
    (m) => m.quiche,
    (err: unknown) => {
      loading = undefined;
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new SmartcopyError(
        'SC_ERR_UNSUPPORTED',
        `QUIC is not available here: the quiche binary of @matrixai/quic did not load (${why})`,
        { cause: err },
      );
    },
  );
  return loading;
}
