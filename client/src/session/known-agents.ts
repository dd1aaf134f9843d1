import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SmartcopyError } from '@smartcopy/protocol';
import type { QuicPeerIdentity, VerifyPeer } from '@smartcopy/transports';

/** Where first-use fingerprints of QUIC agents are kept, like ~/.ssh/known_hosts. */
export function knownAgentsFile(): string {
  return path.join(os.homedir(), '.smartcopy', 'known_agents');
}

/**
 * Trust on first use: an agent seen for the first time is recorded (`host:port SHA256:...`);
 * later its certificate must have the recorded fingerprint, and a different one is refused the
 * way OpenSSH refuses a changed host key.
 */
export function trustOnFirstUse(file: string, notice: (line: string) => void, keyOf: (peer: QuicPeerIdentity) => { address: string; fingerprint: string } = (p) => p): VerifyPeer {
  return (seen: QuicPeerIdentity) => {
    const peer = keyOf(seen);
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new SmartcopyError('SC_ERR_AUTH', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}; refusing to trust ${peer.address} blindly`);
      }
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const [addr, fp] = lines[i]!.trim().split(/\s+/);
      if (addr !== peer.address || fp === undefined) continue;
      if (fp === peer.fingerprint) return;
      throw new SmartcopyError(
        'SC_ERR_AUTH',
        `WARNING: THE IDENTITY OF THE AGENT AT ${peer.address} HAS CHANGED: it presented ${peer.fingerprint}, but ${file}:${i + 1} records ${fp}. Someone may be intercepting the connection, or the agent got a new certificate; if you know it did, remove line ${i + 1} of ${file} (or pass --quic-fingerprint) and connect again`,
      );
    }
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.appendFileSync(file, `${peer.address} ${peer.fingerprint}\n`, { mode: 0o600 });
    notice(`Permanently added ${peer.address} (${peer.fingerprint}) to the list of known agents (${file})`);
  };
}
