import { SmartcopyError } from '@smartcopy/protocol';
import { DEFAULT_QUIC_PORT, DEFAULT_TCP_PORT, DEFAULT_WEBTRANSPORT_PORT } from './config.js';

/** Where one side of a copy lives. */
export type Target =
  | { kind: 'local'; path: string; trailingSlash: boolean }
  | { kind: 'tcp'; host: string; port: number; path: string; trailingSlash: boolean; display: string }
  | { kind: 'quic'; host: string; port: number; path: string; trailingSlash: boolean; display: string }
  | { kind: 'webtransport'; host: string; port: number; path: string; trailingSlash: boolean; display: string }
  /** port undefined: from ~/.ssh/config or 22; user undefined: from the config or the local user */
  | { kind: 'ssh'; host: string; user?: string; port?: number; path: string; trailingSlash: boolean; display: string };

export type RemoteTarget = Exclude<Target, { kind: 'local' }>;

export interface TargetOptions {
  /** `host:/path` names a TCP agent on the default port */
  tcpAgent?: boolean;
  /** `[user@]host:path` is reached over SSH */
  ssh?: boolean;
  /** `https://host[:port]/path` names a WebTransport agent */
  webtransport?: boolean;
}

const HOST = String.raw`(\[[^\]]+\]|[A-Za-z0-9._-]+)`;
const USER = String.raw`([^@/:\s]+)@`;

/**
 * Parse a SRC or DST operand:
 *   /local/path, ./rel, C:\dir        local
 *   host:PORT:/path                   TCP agent (PORT numeric), path inside the agent's root
 *   tcp://host[:PORT]/path            TCP agent
 *   [v6addr]:PORT:/path               TCP agent on an IPv6 address
 *   quic://host[:port]/path           QUIC agent (default port 4433)
 *   wt://host[:port]/path             WebTransport agent (default port 4443); https:// with --webtransport
 *   ssh://[user@]host[:port]/path     SSH (implies --ssh)
 *   [user@]host:path (with --ssh)     SSH; a relative path is under the remote home, as with scp
 */
export function parseTarget(text: string, opts: TargetOptions = {}): Target {
  if (text === '') throw new SmartcopyError('SC_ERR_USAGE', 'empty path');
  const trailingSlash = /[\\/]$/.test(text);
  const url = /^tcp:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i.exec(text);
  if (url) return tcp(url[1]!, url[2], url[3] ?? '/', trailingSlash, text);
  const quicUrl = /^quic:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i.exec(text);
  if (quicUrl) return { kind: 'quic', host: unbracket(quicUrl[1]!), port: port(quicUrl[2], text, DEFAULT_QUIC_PORT)!, path: quicUrl[3] ?? '/', trailingSlash, display: text };
  if (/^quic:\/\//i.test(text)) throw new SmartcopyError('SC_ERR_USAGE', `cannot parse ${text}: expected quic://host[:port]/path`);
  const wtUrl = (opts.webtransport ? /^(?:wt|https):\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i : /^wt:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i).exec(text);
  if (wtUrl) {
    return { kind: 'webtransport', host: unbracket(wtUrl[1]!), port: port(wtUrl[2], text, DEFAULT_WEBTRANSPORT_PORT)!, path: wtUrl[3] ?? '/', trailingSlash, display: text };
  }
  if (/^wt:\/\//i.test(text)) throw new SmartcopyError('SC_ERR_USAGE', `cannot parse ${text}: expected wt://host[:port]/path`);
  const sshUrl = new RegExp(String.raw`^ssh://(?:${USER})?${HOST}(?::(\d+))?(/.*)?$`, 'i').exec(text);
  if (sshUrl) {
    // ssh://host/~/dir is a path under the remote home
    const p = (sshUrl[4] ?? '/').replace(/^\/~(\/|$)/, '');
    return ssh(sshUrl[1], sshUrl[2]!, sshUrl[3], p, trailingSlash, text);
  }
  if (/^ssh:\/\//i.test(text)) throw new SmartcopyError('SC_ERR_USAGE', `cannot parse ${text}: expected ssh://[user@]host[:port]/path`);
  const hp = /^(\[[^\]]+\]|[A-Za-z0-9._-]+):(\d+):(.*)$/.exec(text);
  // host:PORT:/path names a TCP agent even with --ssh, so fan-out can mix both forms
  if (hp && !/^[A-Za-z]$/.test(hp[1]!)) return tcp(hp[1]!, hp[2], hp[3] || '/', trailingSlash, text);
  const remote = new RegExp(String.raw`^(?:${USER})?${HOST}:(.*)$`).exec(text);
  // a one-letter "host" is a Windows drive (C:\dir), never a remote
  const isRemote = remote !== null && !/^[A-Za-z]$/.test(remote[2]!);
  if (isRemote && opts.ssh) return ssh(remote[1], remote[2]!, undefined, remote[3]!, trailingSlash, text);
  if (isRemote && opts.tcpAgent) {
    if (remote[1] !== undefined) throw new SmartcopyError('SC_ERR_USAGE', `${text}: a TCP agent has no login user; drop "${remote[1]}@" or use --ssh`);
    return tcp(remote[2]!, undefined, remote[3] || '/', trailingSlash, text);
  }
  if (isRemote && remote[1] !== undefined) {
    throw new SmartcopyError('SC_ERR_USAGE', `${text} looks like a remote path: add --ssh to copy over SSH (or write ssh://${remote[1]}@${remote[2]}/...)`);
  }
  return { kind: 'local', path: text, trailingSlash };
}

function port(text: string | undefined, display: string, dflt: number | undefined): number | undefined {
  if (text === undefined) return dflt;
  const p = Number(text);
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new SmartcopyError('SC_ERR_USAGE', `bad port in ${display}`);
  return p;
}

function unbracket(h: string): string {
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

function tcp(hostText: string, portText: string | undefined, path: string, trailingSlash: boolean, display: string): Target {
  return { kind: 'tcp', host: unbracket(hostText), port: port(portText, display, DEFAULT_TCP_PORT)!, path, trailingSlash, display };
}

function ssh(user: string | undefined, hostText: string, portText: string | undefined, path: string, trailingSlash: boolean, display: string): Target {
  return { kind: 'ssh', host: unbracket(hostText), user, port: port(portText, display, undefined), path, trailingSlash, display };
}

/**
 * A path on an agent is inside its root (like an rsync daemon module): "/backup" and "backup"
 * both mean <root>/backup. Returns the '/'-separated relative path ('' = the root).
 */
export function agentRelative(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new SmartcopyError('SC_ERR_PATH_ESCAPE', `${JSON.stringify(path)}: '..' is not allowed in a path on an agent`);
  return parts.join('/');
}
