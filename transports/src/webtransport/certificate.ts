import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import os from 'node:os';
import tls from 'node:tls';
import { SmartcopyError } from '@smartcopy/protocol';
import { abortReason } from '../abstract-connection.js';
import { certificateFingerprint, normalizeFingerprint } from '../quic/cert.js';
import { connectError, formatHostPort } from '../tcp/connect.js';
import type { HostPort } from '../tcp/connect.js';

/**
 * WebTransport accepts a certificate pinned by its hash only if it is valid for at most 14 days
 * (W3C WebTransport, "serverCertificateHashes"; the package enforces it on HTTP/2 too).
 */
export const WEBTRANSPORT_MAX_CERT_DAYS = 14;
/** Validity of the certificates generateWebTransportCertificate() makes: a day of margin under the cap. */
export const WEBTRANSPORT_CERT_DAYS = 13;

const DAY_MS = 86_400_000;

export interface WebTransportCertificate {
  certPem: string;
  keyPem: string;
  /** certificateFingerprint(certPem): "SHA256:<base64>", what clients pin */
  fingerprint: string;
  /** publicKeyFingerprint(certPem): stays the same when the certificate is renewed with the same key */
  publicKeyFingerprint: string;
  validFrom: Date;
  validTo: Date;
}

export interface WebTransportCertificateOptions {
  /** reuse this private key (PEM) so the public key, and its fingerprint, survive renewal */
  keyPem?: string;
  /** days of validity, at most 14 (default 13) */
  days?: number;
  /** DNS names and IP addresses for the subjectAltName (default: none; clients pin the hash) */
  hosts?: readonly string[];
}

/**
 * "SHA256:" + unpadded base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo (DER).
 * A WebTransport certificate must be renewed at least every 14 days; renewed with the same key
 * it keeps this fingerprint, so a client can trust the key once and still verify every renewal.
 */
export function publicKeyFingerprint(certPem: string): string {
  let spki: Buffer;
  try {
    spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw new SmartcopyError('SC_ERR_USAGE', `unreadable PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  return `SHA256:${createHash('sha256').update(spki).digest('base64').replace(/=+$/, '')}`;
}

/**
 * A self-signed ECDSA P-256 certificate a WebTransport client can pin by hash: valid from an
 * hour ago for `days` (≤ 14) days. An agent renews it before it expires (with the same key, so
 * the public-key fingerprint does not change).
 */
export async function generateWebTransportCertificate(opts: WebTransportCertificateOptions = {}): Promise<WebTransportCertificate> {
  const days = opts.days ?? WEBTRANSPORT_CERT_DAYS;
  if (!(days > 0 && days <= WEBTRANSPORT_MAX_CERT_DAYS)) {
    throw new SmartcopyError('SC_ERR_USAGE', `a WebTransport certificate may be valid for at most ${WEBTRANSPORT_MAX_CERT_DAYS} days, not ${days}`);
  }
  let keyPair: { privateKey: string; publicKey: string } | undefined;
  if (opts.keyPem !== undefined) {
    try {
      const key = createPrivateKey(opts.keyPem);
      keyPair = {
        privateKey: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
        publicKey: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString(),
      };
    } catch (err) {
      throw new SmartcopyError('SC_ERR_USAGE', `unreadable private key: ${(err as Error).message}`, { cause: err });
    }
  }
  // selfsigned is CommonJS; a dynamic import keeps it off the start-up path of everything else
  const { generate } = (await import('selfsigned')) as typeof import('selfsigned');
  const notBefore = new Date(Date.now() - 3_600_000);
  const notAfter = new Date(notBefore.getTime() + days * DAY_MS);
  const altNames = (opts.hosts ?? []).map((h) => (/^[\d.]+$|:/.test(h) ? { type: 7 as const, ip: h } : { type: 2 as const, value: h }));
  const r = await generate([{ name: 'commonName', value: `smartcopy agent ${os.hostname()}` }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    ...(keyPair ? { keyPair } : {}),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      ...(altNames.length > 0 ? [{ name: 'subjectAltName' as const, altNames }] : []),
    ],
  });
  const x = new X509Certificate(r.cert);
  return {
    certPem: r.cert,
    keyPem: r.private,
    fingerprint: certificateFingerprint(r.cert),
    publicKeyFingerprint: publicKeyFingerprint(r.cert),
    validFrom: new Date(x.validFrom),
    validTo: new Date(x.validTo),
  };
}

/** Pinned fingerprints (any form normalizeFingerprint takes) as the raw SHA-256 digests WebTransport wants. */
export function certificateHashes(fingerprints: readonly string[]): { algorithm: 'sha-256'; value: Uint8Array }[] {
  return fingerprints.map((fp) => ({
    algorithm: 'sha-256' as const,
    value: Buffer.from(normalizeFingerprint(fp).slice('SHA256:'.length), 'base64'),
  }));
}

/** What the client learns of the server's certificate (the fields of QuicPeerIdentity and more). */
export interface WebTransportPeerIdentity {
  /** the address dialed ("host:port") */
  address: string;
  certDer: Buffer;
  certPem: string;
  /** certificateFingerprint(certDer) */
  fingerprint: string;
  /** publicKeyFingerprint(certPem) */
  publicKeyFingerprint: string;
  validFrom: Date;
  validTo: Date;
  /** the certificate chains to a CA Node trusts and names the host dialed */
  trusted: boolean;
  /** why it is not trusted (an OpenSSL verify code such as DEPTH_ZERO_SELF_SIGNED_CERT) */
  untrustedReason: string | undefined;
}

/** Accepts the server (returns) or refuses it (throws; the dial fails with SC_ERR_AUTH). */
export type WebTransportVerifyPeer = (peer: WebTransportPeerIdentity) => void | Promise<void>;

/** Whole days a certificate is valid for, rounded up. */
export function validityDays(peer: Pick<WebTransportPeerIdentity, 'validFrom' | 'validTo'>): number {
  return Math.ceil((peer.validTo.getTime() - peer.validFrom.getTime()) / DAY_MS);
}

/** Why WebTransport will refuse this certificate when it is pinned by hash, or undefined. */
export function pinnableProblem(peer: Pick<WebTransportPeerIdentity, 'validFrom' | 'validTo'>, now = Date.now()): string | undefined {
  if (peer.validFrom.getTime() > now) return `it is not valid before ${peer.validFrom.toISOString()}`;
  if (peer.validTo.getTime() < now) return `it expired on ${peer.validTo.toISOString()}`;
  if (peer.validTo.getTime() - peer.validFrom.getTime() > WEBTRANSPORT_MAX_CERT_DAYS * DAY_MS) {
    return `it is valid for ${validityDays(peer)} days, and WebTransport accepts a certificate pinned by hash only if it is valid for at most ${WEBTRANSPORT_MAX_CERT_DAYS} days (renew it with generateWebTransportCertificate)`;
  }
  return undefined;
}

export interface ProbeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Fetch the certificate a WebTransport (HTTP/2 over TLS) server presents, with a plain TLS
 * handshake: the package checks certificates itself and does not show them, so this is how a
 * client learns a fingerprint (trust on first use) and how a failed dial is explained.
 */
export function fetchWebTransportCertificate(target: HostPort, opts: ProbeOptions): Promise<WebTransportPeerIdentity> {
  const address = formatHostPort(target.host, target.port);
  const signal = opts.signal;
  if (signal?.aborted) return Promise.reject(abortReason(signal, `connect to ${address}`));
  return new Promise<WebTransportPeerIdentity>((resolve, reject) => {
    const isIp = /^[\d.]+$|:/.test(target.host);
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
      ...(isIp ? {} : { servername: target.host }),
    });
    const finish = (fn: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      fn();
    };
    const onAbort = (): void => finish(() => reject(abortReason(signal!, `connect to ${address}`)));
    const timer = setTimeout(() => {
      finish(() =>
        reject(
          new SmartcopyError('SC_ERR_TIMEOUT', `cannot connect to ${address}: no answer within ${opts.timeoutMs / 1000} s — check the address and firewalls`, {
            retryable: true,
          }),
        ),
      );
    }, opts.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      finish(() =>
        reject(
          err.code
            ? connectError(address, err)
            : new SmartcopyError('SC_ERR_CONNECT', `cannot connect to ${address}: TLS handshake failed (${err.message}) — is a WebTransport agent listening there?`, {
                cause: err,
                retryable: true,
              }),
        ),
      );
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      if (!cert?.raw) {
        finish(() => reject(new SmartcopyError('SC_ERR_AUTH', `${address} presented no certificate`)));
        return;
      }
      let trusted = socket.authorized;
      let untrustedReason = socket.authorizationError ? String(socket.authorizationError) : undefined;
      if (trusted) {
        // the chain is good; the certificate must also name what we dialed
        const nameError = tls.checkServerIdentity(target.host, cert);
        if (nameError) {
          trusted = false;
          untrustedReason = nameError.message;
        }
      }
      const certPem = new X509Certificate(cert.raw).toString();
      const identity: WebTransportPeerIdentity = {
        address,
        certDer: cert.raw,
        certPem,
        fingerprint: certificateFingerprint(cert.raw),
        publicKeyFingerprint: publicKeyFingerprint(certPem),
        validFrom: new Date(cert.valid_from),
        validTo: new Date(cert.valid_to),
        trusted,
        untrustedReason,
      };
      finish(() => resolve(identity));
    });
  });
}
