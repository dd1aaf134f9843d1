import { createHash, createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SmartcopyError } from '@smartcopy/protocol';
import { displayPath } from './config.js';
import type { StrictHostKeyChecking } from './config.js';

/** The key type named inside an SSH public key blob ("ssh-ed25519", "ssh-rsa", ...). */
export function keyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const n = blob.readUInt32BE(0);
  return n > 0 && n <= 64 && blob.length >= 4 + n ? blob.toString('latin1', 4, 4 + n) : 'unknown';
}

/** OpenSSH's fingerprint: "SHA256:" + unpadded base64 of the blob's SHA-256. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** "ED25519", "RSA", "ECDSA": how OpenSSH names a key type in messages. */
export function keyTypeLabel(type: string): string {
  if (type === 'ssh-ed25519') return 'ED25519';
  if (type === 'ssh-rsa') return 'RSA';
  if (type.startsWith('ecdsa-')) return 'ECDSA';
  if (type === 'ssh-dss') return 'DSA';
  return type.toUpperCase();
}

/** The host key algorithms ssh2 can negotiate for a recorded key of this type. */
export function hostKeyAlgorithms(type: string): string[] {
  return type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
}

/** How a host appears in known_hosts: "host" on port 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host.toLowerCase() : `[${host.toLowerCase()}]:${port}`;
}

/** `|1|salt|hash`: the hashed form of a name (HMAC-SHA1 keyed with a random salt). */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const mac = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${mac.toString('base64')}`;
}

export interface KnownHostEntry {
  readonly file: string;
  readonly line: number;
  readonly marker: '' | '@revoked' | '@cert-authority';
  readonly patterns: string;
  readonly type: string;
  readonly key: Buffer;
}

function wildcardMatch(pattern: string, name: string): boolean {
  if (!/[*?]/.test(pattern)) return pattern === name;
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(name);
}

/** Does a known_hosts host field (hashed, or a comma list with wildcards and !negations) name `name`? */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const want = Buffer.from(hash, 'base64');
    const got = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return want.length === got.length && want.equals(got);
  }
  let matched = false;
  for (const raw of field.toLowerCase().split(',')) {
    if (raw.startsWith('!')) {
      if (wildcardMatch(raw.slice(1), name)) return false;
    } else if (wildcardMatch(raw, name)) matched = true;
  }
  return matched;
}

/** Every well-formed line of a known_hosts file (a missing or unreadable file has none). */
export function readKnownHosts(file: string): KnownHostEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: KnownHostEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    let marker: KnownHostEntry['marker'] = '';
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    else if (fields[0].startsWith('@')) continue;
    const [patterns, type, b64] = fields;
    if (!patterns || !type || !b64) continue;
    const key = Buffer.from(b64, 'base64');
    // a line whose blob does not name its own type is corrupt: skip it, as OpenSSH does
    if (keyType(key) !== type) continue;
    out.push({ file, line: i + 1, marker, patterns, type, key });
  }
  return out;
}

export type HostKeyProblem = 'unknown' | 'changed' | 'revoked';

/** The host key could not be trusted. `banner` is OpenSSH's multi-line warning, for a terminal. */
export class HostKeyError extends SmartcopyError {
  readonly problem: HostKeyProblem;
  readonly host: string;
  readonly fingerprint: string;
  readonly keyType: string;
  /** the recorded entry that conflicts (changed / revoked) */
  readonly offending: { file: string; line: number } | undefined;
  readonly banner: string | undefined;

  constructor(
    problem: HostKeyProblem,
    message: string,
    info: { host: string; fingerprint: string; keyType: string; offending?: { file: string; line: number }; banner?: string },
  ) {
    super('SC_ERR_AUTH', message);
    this.name = 'HostKeyError';
    this.problem = problem;
    this.host = info.host;
    this.fingerprint = info.fingerprint;
    this.keyType = info.keyType;
    this.offending = info.offending;
    this.banner = info.banner;
  }
}

export interface HostKeyPolicy {
  /** "host" or "[host]:port" (or the HostKeyAlias) */
  name: string;
  userFiles: readonly string[];
  globalFiles: readonly string[];
  strict: StrictHostKeyChecking;
  /** --accept-new-host-key: record an unknown key (never a changed one) */
  acceptNew: boolean;
  /** write new entries hashed (HashKnownHosts) */
  hash: boolean;
  home: string;
}

export interface HostKeyVerdict {
  /** the key was unknown and has been recorded in this file */
  added?: string;
  /** the key was unknown and accepted without being recorded (StrictHostKeyChecking=no, nothing writable) */
  acceptedUnknown?: boolean;
}

/** The key types already recorded for a name, to ask the server for one of those first (as OpenSSH does). */
export function knownKeyTypes(name: string, files: readonly string[]): string[] {
  const types: string[] = [];
  for (const f of files) {
    for (const e of readKnownHosts(f)) {
      if (e.marker === '' && hostFieldMatches(e.patterns, name) && !types.includes(e.type)) types.push(e.type);
    }
  }
  return types;
}

/**
 * Verify a server's host key the way OpenSSH does:
 * - a matching entry (plain, `[host]:port`, comma list, wildcard or hashed `|1|…`) → trusted;
 * - a `@revoked` line carrying this key → refused, whatever its host field says;
 * - an entry for this name with a different key of the same type → refused, always (OpenSSH's
 *   "REMOTE HOST IDENTIFICATION HAS CHANGED"), even with StrictHostKeyChecking=no;
 * - no entry → refused unless accept-new (--accept-new-host-key) or StrictHostKeyChecking=no,
 *   which record the key in the first user known_hosts file (hashed when HashKnownHosts=yes).
 * `@cert-authority` lines are ignored: ssh2 does not implement host certificates, so a host
 * known only through a CA is treated as unknown.
 */
export function verifyHostKey(key: Buffer, policy: HostKeyPolicy): HostKeyVerdict {
  const type = keyType(key);
  const fp = fingerprint(key);
  const label = keyTypeLabel(type);
  const files = [...policy.userFiles, ...policy.globalFiles];
  const entries = files.flatMap((f) => readKnownHosts(f));
  const info = { host: policy.name, fingerprint: fp, keyType: type };

  const revoked = entries.find((e) => e.marker === '@revoked' && e.key.equals(key));
  if (revoked) {
    const where = `${displayPath(revoked.file, policy.home)}:${revoked.line}`;
    throw new HostKeyError(
      'revoked',
      `Host key verification failed: the ${label} key of ${policy.name} (${fp}) is marked @revoked in ${where}; refusing to connect`,
      { ...info, offending: { file: revoked.file, line: revoked.line } },
    );
  }
  const forHost = entries.filter((e) => e.marker === '' && hostFieldMatches(e.patterns, policy.name));
  if (forHost.some((e) => e.key.equals(key))) return {};

  const conflicting = forHost.find((e) => e.type === type);
  if (conflicting) {
    const where = `${displayPath(conflicting.file, policy.home)}:${conflicting.line}`;
    const removeHint = `ssh-keygen -f ${displayPath(conflicting.file, policy.home)} -R '${policy.name}'`;
    const banner = [
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
      '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
      'IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!',
      'Someone could be eavesdropping on you right now (man-in-the-middle attack)!',
      'It is also possible that a host key has just been changed.',
      `The fingerprint for the ${label} key sent by the remote host is`,
      `${fp}.`,
      'Please contact your system administrator.',
      `Add correct host key in ${conflicting.file} to get rid of this message.`,
      `Offending ${label} key in ${conflicting.file}:${conflicting.line}`,
      `Host key for ${policy.name} has changed and smartcopy always refuses changed host keys.`,
      'Host key verification failed.',
    ].join('\n');
    throw new HostKeyError(
      'changed',
      `WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for ${policy.name}: it sent a ${label} key with fingerprint ${fp}, ` +
        `but ${where} records a different one. Someone may be intercepting the connection (man-in-the-middle), or the host key was just changed; ` +
        `check the new fingerprint with the host's administrator, then remove the old entry (${removeHint}). Host key verification failed.`,
      { ...info, offending: { file: conflicting.file, line: conflicting.line }, banner },
    );
  }

  const accept = policy.acceptNew || policy.strict === 'accept-new' || policy.strict === 'no';
  if (!accept) {
    const other = forHost.length > 0 ? ` (keys of other types are recorded for it: ${[...new Set(forHost.map((e) => keyTypeLabel(e.type)))].join(', ')})` : '';
    const file = policy.userFiles[0] !== undefined ? displayPath(policy.userFiles[0], policy.home) : 'known_hosts';
    throw new HostKeyError(
      'unknown',
      `Host key verification failed: ${policy.name} is not a known host${other}; its ${label} key fingerprint is ${fp}. ` +
        `Check that fingerprint with the host's administrator, then connect once with --accept-new-host-key (or add the key to ${file})`,
      info,
    );
  }
  const target = policy.userFiles[0];
  if (target === undefined) return { acceptedUnknown: true };
  try {
    appendKnownHost(target, policy.hash ? hashHostName(policy.name) : policy.name, type, key);
  } catch (err) {
    // OpenSSH goes on when it cannot record the key; the connection is still verified by the user's choice
    if (policy.strict === 'no') return { acceptedUnknown: true };
    throw new SmartcopyError('SC_ERR_IO', `cannot record the host key of ${policy.name} in ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      cause: err,
      path: target,
    });
  }
  return { added: target };
}

/** Append one entry, creating the file (0600) and its directory (0700) as ssh does. */
export function appendKnownHost(file: string, hostField: string, type: string, key: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let prefix = '';
  try {
    const st = fs.statSync(file);
    if (st.size > 0) {
      const fd = fs.openSync(file, 'r');
      try {
        const last = Buffer.alloc(1);
        fs.readSync(fd, last, 0, 1, st.size - 1);
        if (last[0] !== 0x0a) prefix = '\n';
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch {
    // a new file
  }
  fs.appendFileSync(file, `${prefix}${hostField} ${type} ${key.toString('base64')}\n`, { mode: 0o600 });
}
