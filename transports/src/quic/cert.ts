import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fromSystemError, SmartcopyError } from '@smartcopy/protocol';

/** Where the agent's self-signed certificate lives unless told otherwise. */
export const DEFAULT_CERT_DIR = path.join(os.homedir(), '.smartcopy');
export const CERT_FILE = 'quic-cert.pem';
export const KEY_FILE = 'quic-key.pem';

export interface QuicCertificate {
  certPem: string;
  keyPem: string;
  /** certificateFingerprint(certPem) */
  fingerprint: string;
}

/** What the client learns of the server after the handshake, handed to `verifyPeer`. */
export interface QuicPeerIdentity {
  /** the address dialed ("host:port") */
  address: string;
  /** the server's leaf certificate */
  certDer: Buffer;
  certPem: string;
  /** certificateFingerprint(certDer) */
  fingerprint: string;
}

/** Accepts the server (returns) or refuses it (throws; the dial fails with SC_ERR_AUTH). */
export type VerifyPeer = (peer: QuicPeerIdentity) => void | Promise<void>;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

function toDer(cert: string | Uint8Array): Buffer {
  // DER is an ASN.1 SEQUENCE (0x30); anything else is taken as PEM text
  if (typeof cert !== 'string' && cert[0] === 0x30) return Buffer.from(cert);
  const pem = typeof cert === 'string' ? cert : Buffer.from(cert).toString('latin1');
  const m = PEM_CERT.exec(pem);
  if (!m) throw new SmartcopyError('SC_ERR_USAGE', 'not a certificate: neither DER nor a PEM BEGIN CERTIFICATE block');
  try {
    return new X509Certificate(m[0]).raw;
  } catch (err) {
    throw new SmartcopyError('SC_ERR_USAGE', `unreadable PEM certificate: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The certificate's identity, "SHA256:" + unpadded base64 of the SHA-256 of its DER encoding —
 * the form OpenSSH prints for host keys, e.g. "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".
 * Takes a PEM (the first certificate of it) or DER.
 */
export function certificateFingerprint(cert: string | Uint8Array): string {
  return `SHA256:${createHash('sha256').update(toDer(cert)).digest('base64').replace(/=+$/, '')}`;
}

/**
 * A fingerprint as a user may write it, in canonical form: "SHA256:<base64>" (padding optional,
 * the "SHA256:" prefix case-insensitive) or 32 bytes of hex with or without colons (OpenSSL's
 * `x509 -fingerprint -sha256` output).
 */
export function normalizeFingerprint(fp: string): string {
  const s = fp.trim();
  const b64 = /^sha256:([A-Za-z0-9+/]{43})=?$/i.exec(s);
  if (b64) return `SHA256:${b64[1]}`;
  const hex = s.replace(/^sha256[:=]?/i, '').replace(/:/g, '');
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return `SHA256:${Buffer.from(hex, 'hex').toString('base64').replace(/=+$/, '')}`;
  throw new SmartcopyError('SC_ERR_USAGE', `invalid certificate fingerprint ${JSON.stringify(fp)}: expected SHA256:<base64> or 64 hex digits`);
}

/** A verifyPeer hook that accepts only a certificate with one of the given fingerprints. */
export function pinFingerprint(...expected: string[]): VerifyPeer {
  const want = new Set(expected.map(normalizeFingerprint));
  return (peer) => {
    if (want.has(peer.fingerprint)) return;
    throw new SmartcopyError(
      'SC_ERR_AUTH',
      `QUIC server ${peer.address} presented certificate ${peer.fingerprint}, not the pinned ${[...want].join(' or ')} — refusing to connect`,
    );
  };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, 'read', file);
  }
}

/** Write `data` to `file` (mode 0600) only if it does not exist; false when it already did. */
async function writeExclusive(file: string, data: string): Promise<boolean> {
  try {
    await fs.writeFile(file, data, { mode: 0o600, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw fromSystemError(err, 'write', file);
  }
}

/**
 * The agent's TLS identity: `dir/quic-cert.pem` and `dir/quic-key.pem`, generated on first use
 * (a self-signed ECDSA P-256 certificate valid for 100 years — clients pin its fingerprint,
 * so expiry would only break them). The directory is created with mode 0700, the files with
 * 0600. Two agents starting at once agree on one pair: the key is written first and
 * exclusively, and whoever loses the race reads the winner's files.
 */
export async function loadOrCreateCertificate(dir: string = DEFAULT_CERT_DIR): Promise<QuicCertificate> {
  const certFile = path.join(dir, CERT_FILE);
  const keyFile = path.join(dir, KEY_FILE);
  let [certPem, keyPem] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);
  if (certPem === undefined && keyPem === undefined) {
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw fromSystemError(err, 'create directory', dir);
    }
    const generated = await generateSelfSigned();
    if (await writeExclusive(keyFile, generated.keyPem)) {
      await fs.writeFile(certFile, generated.certPem, { mode: 0o600 }).catch((err: unknown) => {
        throw fromSystemError(err, 'write', certFile);
      });
      return { ...generated, fingerprint: certificateFingerprint(generated.certPem) };
    }
    // another process won: its certificate follows its key within milliseconds
    for (let i = 0; i < 50 && certPem === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      certPem = await readIfExists(certFile);
    }
    keyPem = await readIfExists(keyFile);
  }
  if (certPem === undefined || keyPem === undefined) {
    const missing = certPem === undefined ? certFile : keyFile;
    throw new SmartcopyError(
      'SC_ERR_USAGE',
      `QUIC identity in ${dir} is incomplete: ${missing} is missing — restore it, or delete both ${CERT_FILE} and ${KEY_FILE} to make a new one (clients will see a new fingerprint)`,
    );
  }
  return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
}

async function generateSelfSigned(): Promise<{ certPem: string; keyPem: string }> {
  // selfsigned is CommonJS; a dynamic import keeps it off the start-up path of everything else
  const { generate } = (await import('selfsigned')) as typeof import('selfsigned');
  const now = Date.now();
  const r = await generate([{ name: 'commonName', value: `smartcopy agent ${os.hostname()}` }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 86_400_000),
    notAfterDate: new Date(now + 100 * 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
    ],
  });
  return { certPem: r.cert, keyPem: r.private };
}
