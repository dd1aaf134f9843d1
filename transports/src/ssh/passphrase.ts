import fs from 'node:fs';
import tty from 'node:tty';
import { SmartcopyError } from '@smartcopy/protocol';

/** Whether this process has a controlling terminal to prompt on (ssh asks on /dev/tty). */
export function hasTty(): boolean {
  try {
    fs.closeSync(fs.openSync('/dev/tty', 'r'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Ask for a passphrase on the controlling terminal, without echo, as ssh does (it reads
 * /dev/tty, not stdin, so a redirected stdin still gets a prompt). Resolves undefined when the
 * process has no terminal; rejects with SC_ERR_INTERRUPTED on Ctrl-C.
 */
export function promptOnTty(prompt: string): Promise<string | undefined> {
  let rfd: number;
  let wfd: number;
  try {
    rfd = fs.openSync('/dev/tty', 'r');
  } catch {
    return Promise.resolve(undefined);
  }
  try {
    wfd = fs.openSync('/dev/tty', 'w');
  } catch {
    fs.closeSync(rfd);
    return Promise.resolve(undefined);
  }
  return new Promise<string | undefined>((resolve, reject) => {
    const input = new tty.ReadStream(rfd);
    let answer = '';
    let done = false;
    const finish = (err: Error | undefined, value?: string): void => {
      if (done) return;
      done = true;
      input.off('data', onData);
      try {
        input.setRawMode(false);
      } catch {
        // the terminal went away
      }
      input.destroy();
      try {
        fs.writeSync(wfd, '\n');
        fs.closeSync(wfd);
      } catch {
        // same
      }
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish(undefined, answer);
        if (ch === '\u0003') return finish(new SmartcopyError('SC_ERR_INTERRUPTED', 'interrupted at the passphrase prompt'));
        if (ch === '\u0004') return finish(undefined, answer.length > 0 ? answer : undefined);
        if (ch === '\u007f' || ch === '\b') answer = answer.slice(0, -1);
        else if (ch === '\u0015') answer = '';
        else answer += ch;
      }
    };
    try {
      input.setRawMode(true);
      fs.writeSync(wfd, prompt);
    } catch {
      finish(undefined, undefined);
      return;
    }
    input.on('data', onData);
    input.on('error', () => finish(undefined, undefined));
  });
}
