import { SmartcopyError } from '@smartcopy/protocol';
import { DEFAULT_TCP_PORT } from './config.js';

/** Where one side of a copy lives. */
export type Target =
  | { kind: 'local'; path: string; trailingSlash: boolean }
  | { kind: 'tcp'; host: string; port: number; path: string; trailingSlash: boolean; display: string };

/**
 * Parse a SRC or DST operand:
 *   /local/path, ./rel, C:\dir   local
 *   host:PORT:/path               TCP agent (PORT numeric), path inside the agent's root
 *   tcp://host[:PORT]/path        TCP agent
 *   [v6addr]:PORT:/path           TCP agent on an IPv6 address
 */
export function parseTarget(text: string, opts: { tcpAgent?: boolean } = {}): Target {
  if (text === '') throw new SmartcopyError('SC_ERR_USAGE', 'empty path');
  const trailingSlash = /[\\/]$/.test(text);
  const url = /^tcp:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/.*)?$/i.exec(text);
  if (url) return tcp(url[1]!, url[2], url[3] ?? '/', trailingSlash, text);
  const hp = /^(\[[^\]]+\]|[A-Za-z0-9._-]+):(\d+):(.*)$/.exec(text);
  if (hp && !/^[A-Za-z]$/.test(hp[1]!)) return tcp(hp[1]!, hp[2], hp[3] || '/', trailingSlash, text);
  if (opts.tcpAgent) {
    const hostPath = /^(\[[^\]]+\]|[A-Za-z0-9._-]+):(.*)$/.exec(text);
    if (hostPath && !/^[A-Za-z]$/.test(hostPath[1]!)) return tcp(hostPath[1]!, undefined, hostPath[2] || '/', trailingSlash, text);
  }
  return { kind: 'local', path: text, trailingSlash };
}

function tcp(hostText: string, portText: string | undefined, path: string, trailingSlash: boolean, display: string): Target {
  const host = hostText.startsWith('[') ? hostText.slice(1, -1) : hostText;
  const port = portText === undefined ? DEFAULT_TCP_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SmartcopyError('SC_ERR_USAGE', `bad port in ${display}`);
  return { kind: 'tcp', host, port, path, trailingSlash, display };
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
