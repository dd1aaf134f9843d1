import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const VERSION = 1;
const MAC_LEN = 16;
/** version (1) · issue time in ms (6) · original dcid length (1) · original dcid · mac */
const HEAD_LEN = 8;

/**
 * Address-validation tokens carried by QUIC Retry packets (RFC 9000 §8.1.2). The server keeps
 * no state between the Retry and the client's second Initial: the token binds the client's
 * address and port, the connection id the server chose in the Retry and the client's original
 * destination id (which quiche must see again to authenticate the handshake), under an HMAC
 * with a per-listener key, and expires after `lifetimeMs`.
 */
export class RetryTokens {
  readonly #key: Buffer;
  readonly #lifetimeMs: number;

  constructor(lifetimeMs: number, key: Buffer = randomBytes(32)) {
    this.#key = key;
    this.#lifetimeMs = lifetimeMs;
  }

  mint(host: string, port: number, odcid: Uint8Array, newScid: Uint8Array, now = Date.now()): Buffer {
    const token = Buffer.allocUnsafe(HEAD_LEN + odcid.byteLength + MAC_LEN);
    token[0] = VERSION;
    token.writeUIntBE(now, 1, 6);
    token[7] = odcid.byteLength;
    token.set(odcid, HEAD_LEN);
    this.#mac(token.subarray(0, HEAD_LEN + odcid.byteLength), host, port, newScid).copy(token, HEAD_LEN + odcid.byteLength);
    return token;
  }

  /**
   * The original destination connection id when `token` was minted by this listener for this
   * address and connection id and has not expired; undefined otherwise.
   */
  verify(token: Uint8Array, host: string, port: number, scid: Uint8Array, now = Date.now()): Buffer | undefined {
    if (token.byteLength < HEAD_LEN + MAC_LEN || token[0] !== VERSION) return undefined;
    const t = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
    const odcidLen = t[7]!;
    if (t.byteLength !== HEAD_LEN + odcidLen + MAC_LEN) return undefined;
    const body = t.subarray(0, HEAD_LEN + odcidLen);
    if (!timingSafeEqual(this.#mac(body, host, port, scid), t.subarray(HEAD_LEN + odcidLen))) return undefined;
    const issued = t.readUIntBE(1, 6);
    if (now < issued || now - issued > this.#lifetimeMs) return undefined;
    return Buffer.from(t.subarray(HEAD_LEN, HEAD_LEN + odcidLen));
  }

  #mac(body: Uint8Array, host: string, port: number, scid: Uint8Array): Buffer {
    return createHmac('sha256', this.#key).update(body).update(scid).update(`${host}|${port}`).digest().subarray(0, MAC_LEN);
  }
}
