/**
 * A private OpenSSH sshd on 127.0.0.1 for tests, everything in a fresh temp dir, and a real
 * ssh-agent. Other packages import this from `transports/dist/test/helpers/sshd.js`.
 *
 * sshd runs as a child (`sshd -D -e`), so stop() is reliable; every connection it accepts is a
 * child process of it (killSessions() kills them, which is how a test breaks a connection the
 * way a crashed server or a dropped network would). Sessions get a PATH that holds this `node`.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SSHD_PATH = process.env.SMARTCOPY_TEST_SSHD ?? '/usr/sbin/sshd';
/** how long a fixture waits for sshd / ssh-agent to come up */
const START_TIMEOUT_MS = 10_000;

export interface Sshd {
  readonly port: number;
  readonly host: '127.0.0.1';
  /** the user the test runs as (and logs in as) */
  readonly user: string;
  /** the temp dir holding everything below */
  readonly dir: string;
  /** unencrypted client key (private key path; `${clientKey}.pub` next to it) */
  readonly clientKey: string;
  /** encrypted client key, also authorized */
  readonly encryptedKey: string;
  readonly passphrase: string;
  /** a known_hosts file recording this server's host key as `[127.0.0.1]:port` */
  readonly knownHosts: string;
  /** an ssh_config with `Host ${alias}` → this server, clientKey, knownHosts, BatchMode */
  readonly sshConfig: string;
  readonly alias: string;
  /** the host public key line ("ssh-ed25519 AAAA... comment") */
  readonly hostKeyPub: string;
  /** the host private key file (start another sshd with the same identity: { hostKey }) */
  readonly hostKey: string;
  /** the node binary sessions can run (absolute) */
  readonly nodePath: string;
  /** the listener's pid */
  readonly pid: number;
  /** sshd's own log (stderr), for failure messages */
  log(): string;
  /** pids of the per-connection sshd processes and everything they run */
  sessionPids(): number[];
  /** kill every connection's processes (the listener keeps running); returns how many were killed */
  killSessions(signal?: NodeJS.Signals): number;
  /** stop sshd and its sessions, remove the temp dir */
  stop(): Promise<void>;
}

export interface SshdOptions {
  /** sshd_config lines; they override ours (a Match block in it goes at the end) */
  extraConfig?: string;
  /** reuse this host private key (copied) instead of generating one */
  hostKey?: string;
  /** the Host alias in sshConfig (default "smartcopy-test") */
  alias?: string;
}

/**
 * Spawn a daemon that dies with us: setpriv --pdeathsig makes the kernel send it SIGTERM when
 * this process goes away, so a test run killed by a timeout leaves no sshd behind.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
function spawnDaemon(cmd: string, args: string[]): ChildProcess {
  const [file, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'TERM', cmd, ...args]] : [cmd, args];
  return spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

async function keygen(file: string, comment: string, passphrase = ''): Promise<void> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file]);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something on host:port answers with an SSH banner. */
async function waitForBanner(port: number, child: ChildProcess, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('sshd exited');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      const done = (v: boolean): void => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(1000, () => done(false));
      s.once('error', () => done(false));
      s.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('SSH-')));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('sshd did not answer in time');
}

/** pid → parent pid for every process we can see */
function processTree(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      // the command name is in parentheses and may contain spaces: ppid follows the last ')'
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(name), Number(rest[1]));
    } catch {
      // it exited meanwhile
    }
  }
  return parents;
}

function descendants(pid: number): number[] {
  const parents = processTree();
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

function killAll(pids: readonly number[], signal: NodeJS.Signals): number {
  let n = 0;
  for (const p of pids) {
    try {
      process.kill(p, signal);
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Start a private sshd on a free 127.0.0.1 port. */
export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  if (!fs.existsSync(SSHD_PATH)) throw new Error(`${SSHD_PATH} not found: install openssh-server`);
  const dir = tempDir('smartcopy-sshd-');
  try {
    return await startIn(dir, opts);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(dir: string, opts: SshdOptions): Promise<Sshd> {
  fs.chmodSync(dir, 0o700);
  // sshd refuses to start without its privilege separation directory
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const user = os.userInfo().username;
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  const clientKey = path.join(dir, 'id_ed25519');
  const encryptedKey = path.join(dir, 'id_ed25519_encrypted');
  const passphrase = 'correct horse battery staple';
  if (opts.hostKey) {
    fs.copyFileSync(opts.hostKey, hostKey);
    fs.chmodSync(hostKey, 0o600);
    const { stdout } = await run('ssh-keygen', ['-y', '-f', hostKey]);
    fs.writeFileSync(`${hostKey}.pub`, `${stdout.trim()} smartcopy-test-host\n`);
  } else {
    await keygen(hostKey, 'smartcopy-test-host');
  }
  await Promise.all([keygen(clientKey, 'smartcopy-test-client'), keygen(encryptedKey, 'smartcopy-test-encrypted', passphrase)]);
  const hostKeyPub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim();
  fs.writeFileSync(
    path.join(dir, 'authorized_keys'),
    `${fs.readFileSync(`${clientKey}.pub`, 'utf8').trim()}\n${fs.readFileSync(`${encryptedKey}.pub`, 'utf8').trim()}\n`,
    { mode: 0o600 },
  );
  const nodePath = process.execPath;
  const sessionPath = [...new Set([path.dirname(nodePath), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'])].join(':');
  const alias = opts.alias ?? 'smartcopy-test';

  // sshd keeps the first value of a keyword: extra settings go first to win over ours, except
  // Match blocks, which must come last
  const extra = opts.extraConfig ?? '';
  const m = /^\s*Match\b/im.exec(extra);
  const extraFirst = m ? extra.slice(0, m.index) : extra;
  const extraMatch = m ? extra.slice(m.index) : '';
  let lastErr: unknown;
  // a free port can be taken between our probe and sshd's bind: try a few
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const sshdConfig = path.join(dir, 'sshd_config');
    fs.writeFileSync(
      sshdConfig,
      [
        '# smartcopy test sshd (transports/test/helpers/sshd.ts)',
        extraFirst,
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'UseDNS no',
        'PrintMotd no',
        'PrintLastLog no',
        'MaxStartups 100:30:200',
        'MaxSessions 64',
        'MaxAuthTries 20',
        'Subsystem sftp internal-sftp',
        // sessions must find this node (and the CLI it runs) on PATH
        `SetEnv PATH=${sessionPath}`,
        'LogLevel INFO',
        extraMatch,
        '',
      ].join('\n'),
    );
    const child = spawnDaemon(SSHD_PATH, ['-D', '-e', '-f', sshdConfig]);
    let log = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      log = (log + d).slice(-65536);
    });
    child.once('error', () => undefined);
    try {
      await waitForBanner(port, child, Date.now() + START_TIMEOUT_MS);
    } catch (err) {
      child.kill('SIGKILL');
      await exited(child);
      lastErr = new Error(`sshd failed to start on 127.0.0.1:${port}: ${(err as Error).message}\n${log}`);
      if (/Address already in use/i.test(log)) continue;
      throw lastErr;
    }
    const knownHosts = path.join(dir, 'known_hosts');
    const [keyType, keyB64] = hostKeyPub.split(/\s+/);
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${keyType} ${keyB64}\n`);
    const sshConfig = path.join(dir, 'ssh_config');
    fs.writeFileSync(
      sshConfig,
      [
        `# use with: ssh -F ${sshConfig} ${alias}`,
        `Host ${alias}`,
        '  HostName 127.0.0.1',
        `  Port ${port}`,
        `  User ${user}`,
        `  IdentityFile ${clientKey}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${knownHosts}`,
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const pid = child.pid!;
    let stopping: Promise<void> | undefined;
    return {
      port,
      host: '127.0.0.1',
      user,
      dir,
      clientKey,
      encryptedKey,
      passphrase,
      knownHosts,
      sshConfig,
      alias,
      hostKeyPub,
      hostKey,
      nodePath,
      pid,
      log: () => log,
      sessionPids: () => descendants(pid),
      killSessions: (signal: NodeJS.Signals = 'SIGKILL') => killAll(descendants(pid), signal),
      stop() {
        stopping ??= (async () => {
          const sessions = descendants(pid);
          child.kill('SIGTERM');
          killAll(sessions, 'SIGTERM');
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
            killAll(sessions, 'SIGKILL');
          }, 3000);
          await exited(child);
          clearTimeout(timer);
          fs.rmSync(dir, { recursive: true, force: true });
        })();
        return stopping;
      },
    };
  }
  throw lastErr;
}

export interface SshAgentFixture {
  /** the agent's socket (SSH_AUTH_SOCK) */
  readonly socket: string;
  /** ssh-add a key (with its passphrase, given through SSH_ASKPASS) */
  add(keyFile: string, passphrase?: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real ssh-agent on a socket in a temp dir. It runs as `ssh-agent -a SOCK cat`: our child is
 * `cat` reading a pipe from us, and the agent exits once its command is gone — so when this
 * process dies, so does the agent (ssh-agent is setgid, which rules out setpriv --pdeathsig).
 */
export async function startSshAgent(): Promise<SshAgentFixture> {
  const dir = tempDir('smartcopy-agent-');
  const socket = path.join(dir, 'agent.sock');
  const child = spawn('ssh-agent', ['-a', socket, 'cat'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (log += d));
  child.once('error', () => undefined);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`ssh-agent did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const askpass = path.join(dir, 'askpass.sh');
  fs.writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$SMARTCOPY_TEST_PASSPHRASE"\n', { mode: 0o700 });
  let stopping: Promise<void> | undefined;
  return {
    socket,
    async add(keyFile: string, passphrase?: string) {
      await run('ssh-add', ['-q', keyFile], {
        env: {
          ...process.env,
          SSH_AUTH_SOCK: socket,
          SSH_ASKPASS: askpass,
          SSH_ASKPASS_REQUIRE: 'force',
          DISPLAY: process.env.DISPLAY ?? ':0',
          SMARTCOPY_TEST_PASSPHRASE: passphrase ?? '',
        },
      });
    },
    stop() {
      stopping ??= (async () => {
        const agents = descendants(child.pid!);
        killAll(agents, 'SIGTERM');
        child.kill('SIGTERM');
        await exited(child);
        await Promise.all(agents.map(waitGone));
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** Resolves once `pid` no longer exists (it is not our child: we cannot wait() for it). */
async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
