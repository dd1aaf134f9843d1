#!/usr/bin/env node
// A private OpenSSH sshd on 127.0.0.1 for the SSH groups of the benchmark (run.mjs): a free
// port, everything in a fresh temp dir (host key, client key, authorized_keys, known_hosts,
// sshd_config, an ssh_config with a Host alias), `sshd -D -e` as a child of this process. It
// never touches the system's sshd or ~/.ssh. Run on its own, it starts one and keeps it up
// until Ctrl-C, for trying commands by hand:
//
//   node test/bench/sshd.mjs          then, in another shell, the ssh -F ... line it prints
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SSHD_PATH = process.env.SCBENCH_SSHD ?? '/usr/sbin/sshd';
/** every tool of the SSH groups is asked for the same cipher (LIMITS.md: the fastest here) */
export const BENCH_CIPHER = 'aes128-gcm@openssh.com';
const START_TIMEOUT_MS = 10_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function keygen(file, comment) {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`ssh-keygen ${file}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
}

/** true once something on the port answers with an SSH banner (sshd accepts connections) */
function banner(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.once('data', (d) => done(d.toString('latin1').startsWith('SSH-')));
  });
}

/** pid -> parent pid of every visible process */
function parents() {
  const out = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      out.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Every process below `pid`: per-connection sshd processes and what they run (rsync, the agent). */
export function descendants(pid) {
  const pp = parents();
  const out = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift();
    for (const [child, parent] of pp) {
      if (parent === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

function alive(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function signalAll(pids, sig) {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

const shQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);
/** an argv as one POSIX shell command line (what sshd hands the remote shell) */
export const shellJoin = (argv) => argv.map(shQuote).join(' ');

/**
 * Start the private sshd. `logFile` receives its stderr (`-e`: the log goes there). Resolves to
 * { name, pid, child, port, host, user, alias, dir, sshConfig, clientKey, knownHosts, ready,
 * err (= logFile), exited (null while it runs, else its exit code or signal), spawnError,
 * stop() } — the shape of run.mjs's other servers — where stop() is synchronous (it must work from an 'exit' handler): it ends the
 * listener and every session below it, then removes the temp dir. Sessions get a PATH that
 * starts with this node's directory. Throws with sshd's log when it does not come up.
 */
export async function startSshd({ logFile, alias = 'scbench', tmpRoot = os.tmpdir() } = {}) {
  if (!fs.existsSync(SSHD_PATH)) throw new Error(`${SSHD_PATH} not found (apt-get install openssh-server, or set SCBENCH_SSHD)`);
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'scbench-sshd-'));
  try {
    return await startIn(dir, logFile ?? path.join(dir, 'sshd.log'), alias);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(dir, logFile, alias) {
  // sshd refuses keys and configs in group/world-writable places; StrictModes no covers the rest
  fs.chmodSync(dir, 0o700);
  // privilege separation directory: sshd will not start without it
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const user = os.userInfo().username;
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  const clientKey = path.join(dir, 'id_ed25519');
  keygen(hostKey, 'scbench-host');
  keygen(clientKey, 'scbench-client');
  fs.copyFileSync(`${clientKey}.pub`, path.join(dir, 'authorized_keys'));
  fs.chmodSync(path.join(dir, 'authorized_keys'), 0o600);
  const [keyType, keyB64] = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/);
  const sessionPath = [...new Set([path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'])].join(':');
  const sftpServer = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/libexec/sftp-server'].find((p) =>
    fs.existsSync(p),
  );

  let lastErr = null;
  // the free port can be taken between the probe and sshd's bind: a few attempts
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const sshdConfig = path.join(dir, 'sshd_config');
    fs.writeFileSync(
      sshdConfig,
      [
        '# private sshd of test/bench/run.mjs (test/bench/sshd.mjs), loopback only',
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
        // smartcopy opens one exec channel per stream on one connection; several clients at once
        'MaxStartups 100:30:200',
        'MaxSessions 64',
        // the OpenSSH binary, as a stock install serves SFTP (scp >= 9.0 and smartcopy's SFTP mode)
        `Subsystem sftp ${sftpServer ?? 'internal-sftp'}`,
        `SetEnv PATH=${sessionPath}`,
        'LogLevel INFO',
        '',
      ].join('\n'),
    );
    const errFd = fs.openSync(logFile, 'w');
    const child = spawn(SSHD_PATH, ['-D', '-e', '-f', sshdConfig], { stdio: ['ignore', 'ignore', errFd] });
    fs.closeSync(errFd);
    let spawnError = null;
    child.on('error', (e) => (spawnError = e.message));
    // the benchmark stops it explicitly; it must not keep the event loop alive on its own
    child.unref();
    const deadline = Date.now() + START_TIMEOUT_MS;
    let up = false;
    while (!up && Date.now() < deadline && !spawnError && child.exitCode === null && child.signalCode === null) {
      up = await banner(port);
      if (!up) await sleep(20);
    }
    const log = () => {
      try {
        return fs.readFileSync(logFile, 'utf8').trim().slice(-1000);
      } catch {
        return '';
      }
    };
    if (!up) {
      if (child.pid) stopTree(child.pid);
      lastErr = new Error(`sshd did not come up on 127.0.0.1:${port}: ${spawnError ?? log()}`);
      if (/Address already in use/i.test(log())) continue;
      throw lastErr;
    }

    const knownHosts = path.join(dir, 'known_hosts');
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
    const pid = child.pid;
    let stopped = false;
    const srv = {
      name: 'sshd',
      pid,
      child,
      port,
      host: '127.0.0.1',
      user,
      alias,
      dir,
      sshConfig,
      clientKey,
      knownHosts,
      logFile,
      err: logFile,
      exited: child.exitCode ?? child.signalCode ?? null,
      spawnError,
      ready: `${SSHD_PATH} -D on 127.0.0.1:${port} as ${user}, Host ${alias} in ${sshConfig}`,
      stop() {
        if (stopped) return;
        stopped = true;
        stopTree(pid);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
    child.on('exit', (code, signal) => (srv.exited = code ?? signal));
    child.on('error', (e) => (srv.spawnError = e.message));
    return srv;
  }
  throw lastErr;
}

/**
 * SIGTERM to the listener and everything below it, SIGKILL after 3 s. A listener's SIGTERM
 * does not end its sessions, so they are signalled too. Synchronous: "stopped" means gone or
 * a zombie, so their sockets and files are released.
 */
function stopTree(pid) {
  const pids = [...descendants(pid), pid];
  signalAll(pids, 'SIGTERM');
  for (let i = 0; i < 60 && pids.some(alive); i++) sleepSync(50);
  signalAll(pids.filter(alive), 'SIGKILL');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srv = await startSshd();
  process.stdout.write(
    `${srv.ready}\n  ssh -F ${srv.sshConfig} ${srv.alias} true\n  log: ${srv.logFile}\nCtrl-C stops it and removes ${srv.dir}\n`,
  );
  const stop = () => {
    srv.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('exit', () => srv.stop());
  // keep the process alive (the child is unref'd)
  setInterval(() => undefined, 1 << 30);
}
