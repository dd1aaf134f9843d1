import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Challenge-response over a shared token: each side sends a fresh nonce, the client proves it
 * knows the token with HMAC-SHA256 over both nonces and the session id, and the agent answers
 * with its own HMAC (different label) so the client knows it reached an agent holding the same
 * token. The token itself never crosses the wire.
 */
const CLIENT_LABEL = 'smartcopy-auth-v1-client';
const SERVER_LABEL = 'smartcopy-auth-v1-server';
export const NONCE_BYTES = 32;

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

function mac(label: string, token: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, sessionId: string): Buffer {
  return createHmac('sha256', token)
    .update(label)
    .update(clientNonce)
    .update(serverNonce)
    .update(sessionId)
    .digest();
}

export function clientProof(token: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, sessionId: string): Buffer {
  return mac(CLIENT_LABEL, token, clientNonce, serverNonce, sessionId);
}

export function serverProof(token: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, sessionId: string): Buffer {
  return mac(SERVER_LABEL, token, clientNonce, serverNonce, sessionId);
}

export function proofMatches(expected: Buffer, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}
