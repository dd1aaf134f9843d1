/**
 * One error taxonomy for every package. Each error carries a stable string code (used in
 * logs, `--json` events and tests), a stable numeric wire code (carried in Error frames) and
 * maps to one documented process exit code (rsync-style categories, see README "Exit codes").
 */

/** Documented process exit codes. Values follow rsync's where a category matches. */
export const ExitCode = {
  OK: 0,
  /** bad command line: unknown flag, bad value, wrong number of operands */
  USAGE: 1,
  /** the peer speaks a protocol version or feature set we cannot use */
  PROTOCOL_VERSION: 2,
  /** source or destination cannot be selected (missing source, destination not a directory) */
  FILE_SELECTION: 3,
  /** authentication failed or the agent refused the session (token, read-only, busy) */
  AUTH: 5,
  /** could not connect, or the connection broke */
  SOCKET_IO: 10,
  /** a local or remote file operation failed before any file could be transferred */
  FILE_IO: 11,
  /** malformed, oversize or unexpected frames */
  PROTOCOL: 12,
  /** interrupted by SIGINT/SIGTERM */
  INTERRUPTED: 20,
  /** some files were transferred, others failed */
  PARTIAL: 23,
  /** some source files vanished while the run was in progress */
  VANISHED: 24,
  /** a peer stopped answering for longer than the timeout */
  TIMEOUT: 30,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

interface CodeInfo {
  /** numeric code carried in Error frames; never reuse a number */
  wire: number;
  exit: ExitCodeValue;
  /** how bad this is when several streams fail at once: the highest wins */
  severity: number;
}

/** Stable error codes. Add new codes at the end with a new wire number. */
export const ErrorCodes = {
  SC_ERR_INTERNAL: { wire: 1, exit: ExitCode.PARTIAL, severity: 50 },
  SC_ERR_USAGE: { wire: 2, exit: ExitCode.USAGE, severity: 90 },
  SC_ERR_SOURCE_NOT_FOUND: { wire: 3, exit: ExitCode.FILE_SELECTION, severity: 80 },
  SC_ERR_DEST_INVALID: { wire: 4, exit: ExitCode.FILE_SELECTION, severity: 80 },
  SC_ERR_IO: { wire: 5, exit: ExitCode.FILE_IO, severity: 40 },
  SC_ERR_NO_SPACE: { wire: 6, exit: ExitCode.FILE_IO, severity: 45 },
  SC_ERR_PERMISSION: { wire: 7, exit: ExitCode.FILE_IO, severity: 40 },
  SC_ERR_NOT_FOUND: { wire: 8, exit: ExitCode.FILE_IO, severity: 40 },
  SC_ERR_VANISHED: { wire: 9, exit: ExitCode.VANISHED, severity: 20 },
  SC_ERR_CHECKSUM_MISMATCH: { wire: 10, exit: ExitCode.PARTIAL, severity: 40 },
  SC_ERR_PATH_ESCAPE: { wire: 11, exit: ExitCode.FILE_IO, severity: 60 },
  SC_ERR_READ_ONLY: { wire: 12, exit: ExitCode.AUTH, severity: 75 },
  SC_ERR_AUTH: { wire: 13, exit: ExitCode.AUTH, severity: 85 },
  SC_ERR_BUSY: { wire: 14, exit: ExitCode.AUTH, severity: 75 },
  SC_ERR_PROTOCOL: { wire: 15, exit: ExitCode.PROTOCOL, severity: 70 },
  SC_ERR_PROTOCOL_VERSION: { wire: 16, exit: ExitCode.PROTOCOL_VERSION, severity: 88 },
  SC_ERR_FRAME_TOO_LARGE: { wire: 17, exit: ExitCode.PROTOCOL, severity: 70 },
  SC_ERR_MALFORMED_FRAME: { wire: 18, exit: ExitCode.PROTOCOL, severity: 70 },
  SC_ERR_CONNECT: { wire: 19, exit: ExitCode.SOCKET_IO, severity: 82 },
  SC_ERR_CONNECTION_CLOSED: { wire: 20, exit: ExitCode.SOCKET_IO, severity: 65 },
  SC_ERR_TIMEOUT: { wire: 21, exit: ExitCode.TIMEOUT, severity: 66 },
  SC_ERR_INTERRUPTED: { wire: 22, exit: ExitCode.INTERRUPTED, severity: 95 },
  SC_ERR_STREAM_BUFFER: { wire: 23, exit: ExitCode.PROTOCOL, severity: 60 },
  SC_ERR_UNSUPPORTED: { wire: 24, exit: ExitCode.FILE_IO, severity: 55 },
  SC_ERR_ABORTED: { wire: 25, exit: ExitCode.SOCKET_IO, severity: 30 },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ErrorCodes;

const byWire = new Map<number, ErrorCode>(
  (Object.keys(ErrorCodes) as ErrorCode[]).map((c) => [ErrorCodes[c].wire, c]),
);

export interface SmartcopyErrorOptions {
  /** the path concerned, as the user would write it (display form) */
  path?: string;
  cause?: unknown;
  /** true when retrying the same operation may succeed (a dropped connection, a busy agent) */
  retryable?: boolean;
}

/** Base class of every error smartcopy raises on purpose. */
export class SmartcopyError extends Error {
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, opts: SmartcopyErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SmartcopyError';
    this.code = code;
    this.path = opts.path;
    this.retryable = opts.retryable ?? false;
  }

  get exitCode(): ExitCodeValue {
    return ErrorCodes[this.code].exit;
  }

  get wireCode(): number {
    return ErrorCodes[this.code].wire;
  }

  get severity(): number {
    return ErrorCodes[this.code].severity;
  }

  /** Rebuild an error received in an Error frame. Unknown wire codes become SC_ERR_PROTOCOL. */
  static fromWire(wire: number, message: string, path?: string): SmartcopyError {
    const code = byWire.get(wire) ?? 'SC_ERR_PROTOCOL';
    return new SmartcopyError(code, message, { path });
  }
}

export class ProtocolError extends SmartcopyError {
  constructor(
    code: 'SC_ERR_PROTOCOL' | 'SC_ERR_PROTOCOL_VERSION' | 'SC_ERR_FRAME_TOO_LARGE' | 'SC_ERR_MALFORMED_FRAME',
    message: string,
    opts?: SmartcopyErrorOptions,
  ) {
    super(code, message, opts);
    this.name = 'ProtocolError';
  }
}

export class ConnectionClosedError extends SmartcopyError {
  constructor(message = 'connection closed', opts?: SmartcopyErrorOptions) {
    super('SC_ERR_CONNECTION_CLOSED', message, { retryable: true, ...opts });
    this.name = 'ConnectionClosedError';
  }
}

export class PathEscapeError extends SmartcopyError {
  constructor(path: string, why: string) {
    super('SC_ERR_PATH_ESCAPE', `refusing path ${JSON.stringify(path)}: ${why}`, { path });
    this.name = 'PathEscapeError';
  }
}

export function isSmartcopyError(e: unknown): e is SmartcopyError {
  return e instanceof SmartcopyError;
}

/** Map a Node.js system error (errno code) from a file operation to a SmartcopyError. */
export function fromSystemError(err: unknown, action: string, path?: string): SmartcopyError {
  if (err instanceof SmartcopyError) return err;
  const e = err as NodeJS.ErrnoException;
  const sys = typeof e?.code === 'string' ? e.code : undefined;
  const what = path === undefined ? action : `${action} ${JSON.stringify(path)}`;
  const reason = sys ? `${sys}${e.syscall ? ` (${e.syscall})` : ''}` : String(e?.message ?? err);
  switch (sys) {
    case 'ENOENT':
      return new SmartcopyError('SC_ERR_NOT_FOUND', `${what}: no such file or directory`, { path, cause: err });
    case 'EACCES':
    case 'EPERM':
      return new SmartcopyError('SC_ERR_PERMISSION', `${what}: permission denied`, { path, cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new SmartcopyError('SC_ERR_NO_SPACE', `${what}: no space left on device; free some space and run again (completed files are kept)`, { path, cause: err });
    case 'EROFS':
      return new SmartcopyError('SC_ERR_PERMISSION', `${what}: read-only file system`, { path, cause: err });
    default:
      return new SmartcopyError('SC_ERR_IO', `${what}: ${reason}`, { path, cause: err });
  }
}

/** Of several errors (one per stream or file), the one that best explains the failure. */
export function mostSevere(errors: readonly SmartcopyError[]): SmartcopyError | undefined {
  let best: SmartcopyError | undefined;
  for (const e of errors) if (!best || e.severity > best.severity) best = e;
  return best;
}
