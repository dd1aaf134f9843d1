import { StringDecoder } from 'node:string_decoder';
import type { ClientChannel } from 'ssh2';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import { PipeStream } from '../stdio/pipe-stream.js';
import type { PipeStreamInit } from '../stdio/pipe-stream.js';

/**
 * After the remote command's EOF we wait this long for its exit status before handing the EOF
 * to the reader anyway. OpenSSH sends the status right after the EOF when the command exits;
 * the grace only matters for a command that closed its stdout and keeps running.
 */
export const EXIT_STATUS_GRACE_MS = 2_000;
/** stderr kept per channel for error messages */
const STDERR_TAIL_CHARS = 4096;

/** How the remote command ended. */
export interface RemoteExit {
  /** exit status; undefined when killed by a signal or when the channel closed without one */
  readonly code: number | undefined;
  /** "SIGKILL" etc. when the command was killed */
  readonly signal: string | undefined;
  /** the last lines it wrote to stderr */
  readonly stderr: string;
}

/** The remote command failed (non-zero exit with a message on stderr, or killed by a signal). */
export class RemoteCommandError extends ConnectionClosedError {
  readonly command: string;
  /** how the command ended (exit status, signal, stderr tail) */
  readonly exit: RemoteExit;

  constructor(message: string, info: { command: string; exit: RemoteExit; retryable: boolean }) {
    super(message, { retryable: info.retryable });
    this.name = 'RemoteCommandError';
    this.command = info.command;
    this.exit = info.exit;
  }
}

/** The remote shell could not find the command (exit status 127): smartcopy is not installed there. */
export class RemoteCommandNotFoundError extends SmartcopyError {
  readonly command: string;
  readonly stderr: string;

  constructor(message: string, info: { command: string; stderr: string }) {
    super('SC_ERR_CONNECT', message);
    this.name = 'RemoteCommandNotFoundError';
    this.command = info.command;
    this.stderr = info.stderr;
  }
}

export function isRemoteCommandNotFound(err: unknown): err is RemoteCommandNotFoundError {
  return err instanceof RemoteCommandNotFoundError;
}

export interface SshExecStreamInit extends PipeStreamInit {
  command: string;
  /** each complete line the command writes to stderr */
  onStderr?: (line: string) => void;
  /** where the command runs, for messages ("root@host") */
  where: string;
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines[lines.length - 1] ?? '';
}

/**
 * One exec channel as a Stream. The command's EOF is held back until its exit status is known,
 * so that a failed command aborts the stream instead of ending it cleanly: status 127 aborts
 * with RemoteCommandNotFoundError, a non-zero status with stderr text or a signal with
 * RemoteCommandError (one line: the last stderr line). A local abort() sends SIGTERM to the
 * command and closes the channel, so it stops instead of seeing a clean end of input.
 */
export class SshExecStream extends PipeStream {
  readonly command: string;
  /** settles when the channel closes (never rejects) */
  readonly exit: Promise<RemoteExit>;
  readonly #channel: ClientChannel;
  readonly #where: string;
  readonly #onStderr: ((line: string) => void) | undefined;
  readonly #decoder = new StringDecoder('utf8');
  #partial = '';
  #stderrTail = '';
  #eof = false;
  #status: { code: number | undefined; signal: string | undefined } | undefined;
  #channelClosed = false;
  #decided = false;
  #grace: NodeJS.Timeout | undefined;
  #resolveExit!: (exit: RemoteExit) => void;

  constructor(channel: ClientChannel, init: SshExecStreamInit) {
    super(channel, channel, init);
    this.command = init.command;
    this.#channel = channel;
    this.#where = init.where;
    this.#onStderr = init.onStderr;
    this.exit = new Promise<RemoteExit>((resolve) => (this.#resolveExit = resolve));
    channel.stderr.on('data', (chunk: Buffer) => this.#stderr(this.#decoder.write(chunk)));
    channel.stderr.on('end', () => this.#stderr(this.#decoder.end(), true));
    channel.on('exit', (code: number | null, signal?: string) => {
      this.#status ??= { code: code ?? undefined, signal: signal ?? undefined };
      this.#decide();
    });
    channel.on('close', () => {
      this.#channelClosed = true;
      this.#stderr(this.#decoder.end(), true);
      this.#resolveExit(this.#exitInfo());
      this.#decide();
    });
  }

  protected override onReadableEnd(): void {
    this.#eof = true;
    this.#decide();
  }

  protected override sendAbort(err: Error): void {
    // Ask the command to stop, then close the channel without an EOF first: sshd refuses
    // signals for root logins (no privilege separation), and then the command learns of the
    // abort only from the channel closing — its stdout pipe loses its reader before its stdin
    // ends, where an EOF would have looked like a clean end of input.
    this.#signal('TERM');
    try {
      this.#channel.close();
    } catch {
      // the connection is gone
    }
    super.sendAbort(err);
    // a paused channel would never reach its end, and so never report its exit
    this.#channel.resume();
  }

  /** send a signal to the remote command, if the channel can still carry one */
  #signal(name: string): void {
    const ch = this.#channel;
    try {
      if (ch.writable) {
        ch.signal(name);
        return;
      }
      // after our EOF ssh2 refuses channel requests, but the server still takes them
      const priv = ch as unknown as PrivateChannel;
      if (priv.outgoing?.state === 'eof') priv._client?._protocol?.signal(priv.outgoing.id, name);
    } catch {
      // the channel is already gone
    }
  }

  protected override sendClose(): void {
    clearTimeout(this.#grace);
  }

  #stderr(text: string, flush = false): void {
    if (text.length > 0) {
      this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL_CHARS);
      this.#partial += text;
      const lines = this.#partial.split('\n');
      this.#partial = lines.pop()!;
      for (const l of lines) this.#emitLine(l);
    }
    if (flush && this.#partial.length > 0) {
      const l = this.#partial;
      this.#partial = '';
      this.#emitLine(l);
    }
  }

  #emitLine(line: string): void {
    const l = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (this.#onStderr === undefined) return;
    try {
      this.#onStderr(l);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  #exitInfo(): RemoteExit {
    return { code: this.#status?.code, signal: this.#status?.signal, stderr: this.#stderrTail };
  }

  #decide(): void {
    if (this.#decided || !this.#eof) return;
    if (this.#status === undefined && !this.#channelClosed) {
      if (this.#grace === undefined) {
        this.#grace = setTimeout(() => this.#finish(), EXIT_STATUS_GRACE_MS);
        this.#grace.unref();
      }
      return;
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#decided) return;
    this.#decided = true;
    clearTimeout(this.#grace);
    const err = this.#failure();
    if (err) this.remoteAborted(err);
    else this.remoteEnded();
  }

  #failure(): SmartcopyError | undefined {
    const exit = this.#exitInfo();
    const said = lastLine(exit.stderr);
    const program = this.command.trim().split(/\s+/, 1)[0] ?? this.command;
    if (exit.code === 127) {
      const line = exit.stderr.split('\n').find((l) => /not found|no such file/i.test(l))?.trim() ?? said;
      return new RemoteCommandNotFoundError(`command not found on ${this.#where}: ${line || program}`, {
        command: this.command,
        stderr: exit.stderr,
      });
    }
    if (exit.signal !== undefined) {
      return new RemoteCommandError(`${program} on ${this.#where} was killed by ${exit.signal}${said ? `: ${said}` : ''}`, {
        command: this.command,
        exit,
        retryable: true,
      });
    }
    if (exit.code !== undefined && exit.code !== 0 && said) {
      return new RemoteCommandError(`${program} on ${this.#where} failed (exit status ${exit.code}): ${said}`, {
        command: this.command,
        exit,
        retryable: false,
      });
    }
    if (exit.code === undefined && this.#channelClosed && this.#status === undefined) {
      return new ConnectionClosedError(`${program} on ${this.#where}: the channel closed without an exit status${said ? ` (${said})` : ''}`);
    }
    return undefined;
  }
}

interface PrivateChannel {
  outgoing?: { id: number; state: string };
  _client?: { _protocol?: { signal(id: number, name: string): void } };
}
