#!/usr/bin/env node
// smartcopy benchmark: local copies (smartcopy vs cp -a vs rsync -a), pushes over loopback
// TCP (smartcopy agent vs rsync daemon), delta pushes of an edited file onto its original
// (smartcopy --delta vs rsync --no-whole-file), the same pushes over SSH to a private
// loopback sshd (smartcopy --use-agent / SFTP vs rsync -e ssh vs scp), smartcopy's own QUIC
// push at two datagram sizes vs its TCP push, and a fan-out to 8 agents vs 8 single pushes, in
// one run, same machine, same datasets. Usage and how to read the output: test/bench/README.md
// (or --help).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCH_CIPHER, shellJoin, startSshd } from './sshd.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const SCBENCH = '/tmp/scbench';
const DSTROOT = path.join(SCBENCH, 'dst');
const LOGDIR = path.join(SCBENCH, 'logs');
const RSYNCD_CONF = path.join(SCBENCH, 'rsyncd-bench.conf');
const RSYNCD_MODULE = 'scbench';

const USAGE = `Usage: npm run bench -- [options]        (or: node test/bench/run.mjs [options])

  --scale S        dataset scale (default 1: mixed 1.7 GB / 1,111 files, small 20,000 x 4 KiB)
  --runs N         timed runs per tool (default 5)
  --warmup N       untimed warm-up runs per tool before those (default 1)
  --only REGEX     run only rows whose id "group/scenario/dataset/tool" matches, e.g.
                   'local/', 'tcp/', '^delta/', '^ssh', 'small', 'tcp/full/mixed',
                   'ssh/full/mixed/smartcopy', 'smartcopy|rsync'
                   (groups: local with tools smartcopy, cp-a, rsync; tcp with tools
                   smartcopy, rsyncd; delta, ids delta/CASE/TOOL with cases overwrite,
                   insert, delete and tools smartcopy, rsyncd; ssh with tools smartcopy
                   (--use-agent), smartcopy-sftp (mixed only), rsync-ssh, scp (full only);
                   ssh-delta, ids ssh-delta/CASE/TOOL, tools smartcopy, rsync-ssh;
                   quic, ids quic/file1g/TOOL and quic/full/mixed/TOOL, tools
                   smartcopy-quic-1452, smartcopy-quic-16k, smartcopy-tcp; fanout, ids
                   fanout/full/mixed/TOOL, tools smartcopy-fanout (one run to 8 agents),
                   smartcopy-seq (8 single pushes, one after another).
                   'delta/' matches both delta groups, '^delta/' the TCP one)
  --fanout-scale S scale of the fan-out group's mixed dataset (default: --scale, at most
                   0.5: the 8 copies it writes at once must fit the tmpfs)
  --data DIR       dataset directory (default ${SCBENCH}/data at scale 1, else
                   ${SCBENCH}/data-s<scale>, so a small run keeps the big datasets)
  --no-tmpfs       keep destinations on the disk under ${DSTROOT} (default: a tmpfs
                   mounted there for the run when running as root)
  --smartcopy CMD  command used for smartcopy, split on spaces (default: the workspace's
                   node_modules/.bin/smartcopy); SRC DST [flags] are appended, and
                   'agent ...' for the TCP agent; over SSH it is also the --remote-cmd
  -h, --help       this text
`;

// ---------------------------------------------------------------------------------------------
// arguments

function usageError(msg) {
  process.stderr.write(`run.mjs: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      scale: { type: 'string', default: '1' },
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      only: { type: 'string', default: '.' },
      data: { type: 'string' },
      'fanout-scale': { type: 'string' },
      'no-tmpfs': { type: 'boolean', default: false },
      smartcopy: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (err) {
  usageError(err.message);
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const scaleNum = Number(args.scale);
if (!(scaleNum > 0) || !Number.isFinite(scaleNum)) usageError(`--scale must be a positive number, got '${args.scale}'`);
// make-dataset.sh compares its completion marker textually; normalise so 0.10 and .1 agree
const SCALE = String(scaleNum);
const RUNS = Number(args.runs);
const WARMUP = Number(args.warmup);
if (!Number.isInteger(RUNS) || RUNS < 1) usageError(`--runs must be an integer >= 1, got '${args.runs}'`);
if (!Number.isInteger(WARMUP) || WARMUP < 0) usageError(`--warmup must be an integer >= 0, got '${args.warmup}'`);
let ONLY;
try {
  ONLY = new RegExp(args.only);
} catch (err) {
  usageError(`--only: ${err.message}`);
}
// make-dataset.sh rebuilds a tree whose scale differs: one directory per scale by default, so a
// smoke test does not throw away the (slow to build) scale-1 datasets
const dataDirFor = (scale) => path.join(SCBENCH, scale === '1' ? 'data' : `data-s${scale}`);
const DATA = path.resolve(args.data ?? dataDirFor(SCALE));
// The fan-out group keeps 8 copies of its dataset on the destination at once (13.6 GB at scale
// 1, a ~17 GB tmpfs): by default it runs at no more than half scale, in its own directory when
// that differs from --scale.
let fanoutScaleNum = Math.min(scaleNum, 0.5);
if (args['fanout-scale'] !== undefined) {
  fanoutScaleNum = Number(args['fanout-scale']);
  if (!(fanoutScaleNum > 0) || !Number.isFinite(fanoutScaleNum))
    usageError(`--fanout-scale must be a positive number, got '${args['fanout-scale']}'`);
}
const FANOUT_SCALE = String(fanoutScaleNum);
const FANOUT_DATA =
  FANOUT_SCALE === SCALE ? DATA : path.resolve(args.data ? `${DATA}-s${FANOUT_SCALE}` : dataDirFor(FANOUT_SCALE));

// ---------------------------------------------------------------------------------------------
// small helpers

const log = (msg) => process.stderr.write(`${msg}\n`);
const which = (cmd) =>
  (process.env.PATH ?? '')
    .split(':')
    .filter(Boolean)
    .map((d) => path.join(d, cmd))
    .find((p) => {
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return fs.statSync(p).isFile();
      } catch {
        return false;
      }
    }) ?? null;

function firstLine(argv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return null;
  return `${r.stdout}${r.stderr}`.split('\n')[0].replace(/\s+/g, ' ').trim() || null;
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const CLK_TCK = Number(firstLine(['getconf', 'CLK_TCK'])) || 100;

/**
 * CPU seconds (user + system) from /proc/<pid>/stat: the process's own (all its threads) and,
 * separately, that of its children it has already reaped. null when the process is gone.
 */
function procCpu(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // the command name may contain spaces and parentheses; fields after it are plain numbers
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    state: f[0],
    self: (Number(f[11]) + Number(f[12])) / CLK_TCK,
    children: (Number(f[13]) + Number(f[14])) / CLK_TCK,
  };
}

const procAlive = (pid) => {
  const c = procCpu(pid);
  return c !== null && c.state !== 'Z' && c.state !== 'X';
};

/** Child pids of `pid` (needs CONFIG_PROC_CHILDREN; [] when the kernel lacks it). */
function childPids(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmtS = (x) => (x == null ? '—' : x >= 0.1 ? x.toFixed(3) : x.toFixed(4));
const fmtCpu = (x) => (x == null ? '—' : x.toFixed(2));
const fmtRate = (x) => (x == null ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const fmtBytes = (b) =>
  b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(1)} kB`;

/** Filesystem type and source of the mount holding `p` (or its nearest existing parent). */
function fsOf(p) {
  while (!fs.existsSync(p) && p !== '/') p = path.dirname(p);
  const fm = spawnSync('findmnt', ['-no', 'FSTYPE,SOURCE', '--target', p], { encoding: 'utf8' });
  if (!fm.error && fm.status === 0) {
    const [type, source] = fm.stdout.trim().split(/\s+/);
    return { type, source: source ?? null };
  }
  const st = spawnSync('stat', ['-f', '-c', '%T', p], { encoding: 'utf8' });
  return { type: st.status === 0 ? st.stdout.trim().replace('ext2/ext3', 'ext4') : 'unknown', source: null };
}

function isMountPoint(dir) {
  try {
    return fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev;
  } catch {
    return false;
  }
}

/**
 * Walk a tree with lstat (symlinks are entries, never followed). Returns rel path -> entry;
 * '.' is the root itself, so the destination directory's own mode and mtime are checked too.
 */
async function walk(root) {
  const out = new Map();
  const stat = async (abs, rel) => {
    const st = await fsp.lstat(abs);
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    out.set(rel, { type, size: st.size, mtimeS: Math.floor(st.mtimeMs / 1000), mode: st.mode & 0o7777 });
    if (type === 'dir') {
      const names = await fsp.readdir(abs);
      for (const name of names) await stat(path.join(abs, name), rel === '.' ? name : `${rel}/${name}`);
    }
  };
  await stat(root, '.');
  return out;
}

function treeStats(entries) {
  let bytes = 0;
  let files = 0;
  for (const e of entries.values()) {
    if (e.type === 'file') {
      bytes += e.size;
      files++;
    }
  }
  return { bytes, files, entryCount: entries.size };
}

/** tmpfs charges whole pages: what a copy of this tree occupies there. */
function tmpfsFootprint(entries) {
  let b = 0;
  for (const e of entries.values()) b += e.type === 'file' ? Math.ceil(e.size / 4096) * 4096 + 4096 : 4096;
  return b;
}

/** Pull every source file through the page cache so all tools start from the same warm state. */
async function warmCache(root, entries) {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const [rel, e] of entries) {
    if (e.type !== 'file') continue;
    const fh = await fsp.open(path.join(root, rel), 'r');
    try {
      while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
    } finally {
      await fh.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// child processes and cleanup

let currentChild = null;
let mountedTmpfs = null;
const scratchDirs = new Set();
/** The QUIC agents' HOMEs (their certificates): removed at exit, tmpfs or not. */
const tempDirs = new Set();
/**
 * Long-running servers: of the TCP, delta and QUIC groups by tool ({ name, pid, child, port, out,
 * err, ready | failed; a QUIC agent also env and fingerprint }; `smartcopy-tcp` is the same
 * object as `smartcopy`), the fan-out agents as `fanout-N` (also with root), and `sshd` for the
 * SSH groups (see sshd.mjs; it brings its own stop()).
 */
const servers = {};

/**
 * One timed execution. stdout is ignored and stderr goes straight to a file (no pipe, no
 * shell, nothing for this process to read while the clock runs), so a failing tool still
 * leaves its message behind. `cpu` is the tool's user + system time, its own children
 * included: the growth of this process's reaped-children counters across the run (nothing else
 * of ours exits meanwhile; the servers of the TCP group keep running).
 */
function runTimed(argv, stderrFile, env = undefined) {
  return new Promise((resolve) => {
    const errFd = fs.openSync(stderrFile, 'w');
    let settled = false;
    const done = (res) => {
      if (settled) return;
      settled = true;
      currentChild = null;
      fs.closeSync(errFd);
      resolve(res);
    };
    const cpu0 = procCpu(process.pid)?.children;
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', errFd], env: env ?? process.env });
    currentChild = child;
    child.on('error', (err) => done({ ok: false, error: err.message }));
    child.on('exit', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu1 = procCpu(process.pid)?.children;
      done({ ok: code === 0, code, signal, seconds, cpu: cpu0 != null && cpu1 != null ? cpu1 - cpu0 : null });
    });
  });
}

/**
 * Run a command to completion, keeping at most the first `limit` characters of each output
 * stream, and the last `limit` of stdout in `stdoutTail` (where a --json summary ends up).
 */
function capture(argv, limit = 1 << 16, env = undefined) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    currentChild = child;
    const out = { stdout: '', stdoutTail: '', stderr: '', stdoutLines: 0 };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s) => {
      for (const ch of s) if (ch === '\n') out.stdoutLines++;
      if (out.stdout.length < limit) out.stdout += s.slice(0, limit - out.stdout.length);
      out.stdoutTail = (out.stdoutTail + s).slice(-limit);
    });
    child.stderr.on('data', (s) => {
      if (out.stderr.length < limit) out.stderr += s.slice(0, limit - out.stderr.length);
    });
    child.on('error', (err) => {
      currentChild = null;
      resolve({ ...out, code: null, error: err.message });
    });
    child.on('close', (code, signal) => {
      currentChild = null;
      resolve({ ...out, code, signal });
    });
  });
}

function tailOf(file, max = 400) {
  try {
    const s = fs.readFileSync(file, 'utf8').trim();
    return s.length > max ? `…${s.slice(-max)}` : s;
  } catch {
    return '';
  }
}

let cleanedUp = false;
function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  if (currentChild && currentChild.exitCode === null) currentChild.kill('SIGKILL');
  // before the unmount: both servers have their working files (and the agent its root) there
  stopServers();
  if (mountedTmpfs) {
    // a just-killed child may still hold files open for a moment: retry, then detach lazily
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = spawnSync('umount', [mountedTmpfs], { stdio: 'ignore' }).status === 0;
      if (!ok) sleepSync(100);
    }
    if (!ok) ok = spawnSync('umount', ['-l', mountedTmpfs], { stdio: 'ignore' }).status === 0;
    log(ok ? `unmounted tmpfs ${mountedTmpfs}` : `could not unmount ${mountedTmpfs}; run: umount ${mountedTmpfs}`);
    mountedTmpfs = null;
  } else {
    for (const d of scratchDirs) fs.rmSync(d, { recursive: true, force: true });
  }
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
/**
 * SIGTERM, then SIGKILL after 3 s. Synchronous (it also runs from the 'exit' handler, where no
 * event loop reaps children), so "stopped" means gone or a zombie: either way its files and
 * sockets are released.
 */
function stopServers() {
  for (const srv of Object.values(servers)) stopServer(srv);
}

function stopServer(srv) {
  if (srv.stopped || !srv.pid) return;
  srv.stopped = true;
  if (srv.stop) {
    // sshd: its sessions (and the agents or rsyncs they run) are grandchildren, and it owns a temp dir
    srv.stop();
    log(`stopped ${srv.name} (pid ${srv.pid})`);
    return;
  }
  if (!procAlive(srv.pid)) return;
  // the rsync daemon forks per connection; an interrupted run may leave one behind
  for (const pid of [...childPids(srv.pid), srv.pid]) {
    try {
      process.kill(Number(pid), 'SIGTERM');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 60 && procAlive(srv.pid); i++) sleepSync(50);
  if (procAlive(srv.pid)) {
    try {
      process.kill(srv.pid, 'SIGKILL');
    } catch {
      // gone in between
    }
  }
  log(`stopped ${srv.name} (pid ${srv.pid})`);
}
process.on('exit', cleanup);
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(sig, () => {
    log(`\n${sig}: stopping`);
    cleanup();
    process.exit(128 + num);
  });
}

// ---------------------------------------------------------------------------------------------
// tools and scenarios

const notes = [];

function resolveSmartcopy() {
  if (args.smartcopy) {
    const argv = args.smartcopy.trim().split(/\s+/);
    return { argv, available: true, source: `--smartcopy ${args.smartcopy}`, custom: true };
  }
  const bin = path.join(REPO, 'node_modules', '.bin', 'smartcopy');
  let real;
  try {
    real = fs.realpathSync(bin);
  } catch {
    return { argv: null, available: false, reason: `smartcopy not found at ${bin} (npm ci && npm run build)` };
  }
  // Run the entry script with this node directly: what `smartcopy` does, minus the
  // `#!/usr/bin/env node` PATH lookup, and guaranteed to be the same node as this harness.
  const argv = real.endsWith('.js') ? [process.execPath, real] : [real];
  return { argv, available: true, source: real, custom: false };
}

const smartcopy = resolveSmartcopy();
const rsyncPath = which('rsync');
const sshPath = which('ssh');

// SSH groups: everything goes to this run's private sshd (servers.sshd, started before the
// first SSH row runs), through its ssh_config's Host alias, every tool with the same cipher
const sshConfigFile = () => servers.sshd.sshConfig;
/** rsync's -e: the OpenSSH client with the bench's config and cipher */
const rsyncRsh = () => `ssh -F ${sshConfigFile()} -c ${BENCH_CIPHER}`;
const smartcopySsh = () => ['--ssh', '--ssh-config', sshConfigFile(), '--ssh-cipher', BENCH_CIPHER];
// the agent on the far side is this same build, started by this node: the remote shell gets one
// command line, so it is quoted
const smartcopyAgent = () => [...smartcopySsh(), '--use-agent', '--remote-cmd', shellJoin(smartcopy.argv ?? [])];

const TOOLS = {
  smartcopy: {
    label: 'smartcopy',
    available: smartcopy.available,
    reason: smartcopy.reason,
    full: (s, d) => [...smartcopy.argv, s, d],
    resync: (s, d) => [...smartcopy.argv, s, d, '--incremental'],
    delta: (s, d) => [...smartcopy.argv, s, d, '--delta'],
    // the SSH groups: d is ALIAS:/path; a remote agent over exec channels
    ssh: {
      full: (s, d) => [...smartcopy.argv, s, d, ...smartcopyAgent()],
      resync: (s, d) => [...smartcopy.argv, s, d, ...smartcopyAgent(), '--incremental'],
      delta: (s, d) => [...smartcopy.argv, s, d, ...smartcopyAgent(), '--delta'],
    },
  },
  // informational row of ssh/full/mixed: no agent on the remote, plain SFTP
  'smartcopy-sftp': {
    label: 'smartcopy SFTP',
    available: smartcopy.available,
    reason: smartcopy.reason,
    ssh: {
      full: (s, d) => [...smartcopy.argv, s, d, ...smartcopySsh()],
    },
  },
  'cp-a': {
    label: 'cp -a',
    available: which('cp') !== null,
    reason: 'cp not found',
    full: (s, d) => ['cp', '-a', s, d],
  },
  rsync: {
    label: 'rsync -a',
    available: rsyncPath !== null,
    reason: 'rsync not installed (apt-get install rsync)',
    full: (s, d) => ['rsync', '-a', `${s}/`, `${d}/`],
    resync: (s, d) => ['rsync', '-a', `${s}/`, `${d}/`],
  },
  // TCP group: d is rsync://127.0.0.1:PORT/MODULE/REL, a module of this run's rsync daemon
  rsyncd: {
    label: 'rsync daemon',
    available: rsyncPath !== null,
    reason: 'rsync not installed (apt-get install rsync)',
    full: (s, d) => ['rsync', '-a', `${s}/`, `${d}/`],
    resync: (s, d) => ['rsync', '-a', `${s}/`, `${d}/`],
    delta: (s, d) => ['rsync', '-a', '--no-whole-file', s, d],
  },
  // SSH groups: d is ALIAS:/path; the remote rsync is found on the session's PATH
  'rsync-ssh': {
    label: 'rsync -e ssh',
    available: rsyncPath !== null && sshPath !== null,
    reason: rsyncPath === null ? 'rsync not installed (apt-get install rsync)' : 'ssh not installed (apt-get install openssh-client)',
    ssh: {
      full: (s, d) => ['rsync', '-a', '-e', rsyncRsh(), `${s}/`, `${d}/`],
      resync: (s, d) => ['rsync', '-a', '-e', rsyncRsh(), `${s}/`, `${d}/`],
      delta: (s, d) => ['rsync', '-a', '--no-whole-file', '-e', rsyncRsh(), s, d],
    },
  },
  // OpenSSH >= 9.0 speaks SFTP underneath; -p keeps modes and times (no owners: not verified)
  scp: {
    label: 'scp',
    available: which('scp') !== null,
    reason: 'scp not installed (apt-get install openssh-client)',
    ssh: {
      full: (s, d) => ['scp', '-F', sshConfigFile(), '-c', BENCH_CIPHER, '-r', '-p', s, d],
    },
  },
  // QUIC group: d is quic://127.0.0.1:PORT/REL on this datagram size's own agent, whose
  // certificate is pinned with the fingerprint from its ready line (nothing trusted on first use)
  ...Object.fromEntries(
    Object.entries({ 'smartcopy-quic-1452': 1452, 'smartcopy-quic-16k': 16383 }).map(([tool, payload]) => [
      tool,
      {
        label: `smartcopy QUIC ${payload} B`,
        available: smartcopy.available,
        reason: smartcopy.reason,
        quicPayload: payload,
        full: (s, d) => [...smartcopy.argv, s, d, '--quic-payload', String(payload), '--quic-fingerprint', servers[tool].fingerprint],
      },
    ]),
  ),
  // the QUIC group's baseline: the TCP group's agent and command, default --streams
  'smartcopy-tcp': {
    label: 'smartcopy TCP',
    available: smartcopy.available,
    reason: smartcopy.reason,
    full: (s, d) => [...smartcopy.argv, s, d],
  },
  // fan-out group: one run to all FANOUT_NODES agents, and one single push per agent after
  // another (runFanoutScenario builds both commands)
  'smartcopy-fanout': {
    label: 'smartcopy fan-out',
    available: smartcopy.available,
    reason: smartcopy.reason,
  },
  'smartcopy-seq': {
    label: 'smartcopy one by one',
    available: smartcopy.available,
    reason: smartcopy.reason,
  },
};
const isQuicTool = (tool) => TOOLS[tool].quicPayload !== undefined;
/** Agents of the fan-out group, each with its own root under DSTROOT. */
const FANOUT_NODES = 8;

const isDelta = (sc) => sc.group === 'delta' || sc.group === 'ssh-delta';
/** Groups whose rows push to this run's private sshd. */
const overSsh = (sc) => sc.group === 'ssh' || sc.group === 'ssh-delta';
/** Groups whose every full push goes to a new path on a long-running agent (see wipeFor). */
const freshPathPerRun = (sc) => sc.group === 'tcp' || sc.group === 'quic';

/** A row's command: SRC and the tool's operand for DST (a path, an agent or daemon URL, ALIAS:/path). */
function toolArgv(sc, tool, src, target) {
  const kind = isDelta(sc) ? 'delta' : sc.kind;
  return (overSsh(sc) ? TOOLS[tool].ssh : TOOLS[tool])[kind](src, target);
}

const SCENARIOS = [
  {
    group: 'local',
    kind: 'full',
    dataset: 'mixed',
    title: 'Full copy: mixed (destination wiped before every run)',
    tools: ['smartcopy', 'cp-a', 'rsync'],
    goal: { peer: 'cp-a', max: 1.0 },
  },
  {
    group: 'local',
    kind: 'full',
    dataset: 'small',
    title: 'Full copy: small (destination wiped before every run)',
    tools: ['smartcopy', 'cp-a', 'rsync'],
    goal: { peer: 'cp-a', max: 1.0 },
  },
  {
    group: 'local',
    kind: 'resync',
    dataset: 'small',
    title: 'No-change re-sync: small (destination already up to date)',
    tools: ['smartcopy', 'rsync'],
    goal: { peer: 'rsync', max: 1.0 },
  },
  {
    group: 'tcp',
    kind: 'full',
    dataset: 'mixed',
    title: 'TCP push over loopback: mixed (destination wiped before every run)',
    tools: ['smartcopy', 'rsyncd'],
    goal: { peer: 'rsyncd', max: 1.0 },
  },
  {
    group: 'tcp',
    kind: 'full',
    dataset: 'small',
    title: 'TCP push over loopback: small (destination wiped before every run)',
    tools: ['smartcopy', 'rsyncd'],
    goal: { peer: 'rsyncd', max: 1.0 },
  },
  {
    group: 'tcp',
    kind: 'resync',
    dataset: 'small',
    title: 'TCP no-change re-sync: small (destination already up to date)',
    tools: ['smartcopy', 'rsyncd'],
    goal: { peer: 'rsyncd', max: 1.0 },
  },
  {
    group: 'tcp',
    kind: 'resync',
    dataset: 'mixed',
    title: 'TCP no-change re-sync: mixed (destination already up to date)',
    tools: ['smartcopy', 'rsyncd'],
    goal: { peer: 'rsyncd', max: 1.0 },
  },
  // delta group: one edited file pushed over loopback TCP onto a copy of its original; `kind`
  // is the edit, the file sent is delta/changed-KIND.bin
  ...[
    ['overwrite', '100 scattered 4 KiB overwrites'],
    ['insert', '1 MiB inserted in the middle'],
    ['delete', '1 MiB deleted from the middle'],
  ].map(([kind, what]) => ({
    group: 'delta',
    kind,
    dataset: 'delta',
    title: `Delta push over loopback: ${what} (base.bin put at the destination before every run)`,
    tools: ['smartcopy', 'rsyncd'],
    goal: { peer: 'rsyncd', max: 0.6 },
  })),
  // SSH groups (issue 5): pushes to this run's private sshd on loopback, all with aes128-gcm.
  // A goal's `max: null` means no time goal (the issue sets none); the row is informational.
  {
    group: 'ssh',
    kind: 'full',
    dataset: 'mixed',
    title: `SSH push over loopback (${BENCH_CIPHER}): mixed (destination wiped before every run)`,
    tools: ['smartcopy', 'smartcopy-sftp', 'rsync-ssh', 'scp'],
    goal: { peer: 'rsync-ssh', max: 0.65 },
  },
  {
    group: 'ssh',
    kind: 'full',
    dataset: 'small',
    title: `SSH push over loopback (${BENCH_CIPHER}): small (destination wiped before every run)`,
    tools: ['smartcopy', 'rsync-ssh', 'scp'],
    goal: { peer: 'rsync-ssh', max: null },
    // scp pays a round trip per file: 9-15 s here, several times the others. Fewer runs keep
    // the group's time reasonable; its median is still over timed runs of a warm page cache.
    limits: { scp: { warmup: 0, runs: 2 } },
  },
  {
    group: 'ssh',
    kind: 'resync',
    dataset: 'small',
    title: `SSH no-change re-sync (${BENCH_CIPHER}): small (destination already up to date)`,
    tools: ['smartcopy', 'rsync-ssh'],
    goal: { peer: 'rsync-ssh', max: 1.0 },
  },
  ...[
    ['overwrite', '100 scattered 4 KiB overwrites'],
    ['insert', '1 MiB inserted in the middle'],
    ['delete', '1 MiB deleted from the middle'],
  ].map(([kind, what]) => ({
    group: 'ssh-delta',
    kind,
    dataset: 'delta',
    title: `Delta push over SSH (${BENCH_CIPHER}): ${what} (base.bin put at the destination before every run)`,
    tools: ['smartcopy', 'rsync-ssh'],
    goal: { peer: 'rsync-ssh', max: null },
  })),
  // QUIC group (issue 6): smartcopy's own pushes, one QUIC agent per datagram size and the TCP
  // agent. Its goals are rates of the QUIC rows, not ratios to a peer: `minMiBps` per tool.
  ...[
    ['file1g', 'quic/file1g', `one file of 1 GiB${SCALE === '1' ? '' : ` × scale ${SCALE}`}`],
    ['mixed', undefined, 'mixed'],
  ].map(([dataset, idBase, what]) => ({
    group: 'quic',
    kind: 'full',
    dataset,
    idBase,
    title: `QUIC push over loopback at 1452 B and 16 KiB datagrams vs TCP: ${what} (destination wiped before every run)`,
    tools: ['smartcopy-quic-1452', 'smartcopy-quic-16k', 'smartcopy-tcp'],
    goal: { base: 'smartcopy-tcp', minMiBps: { 'smartcopy-quic-1452': 100, 'smartcopy-quic-16k': 500 } },
  })),
  // fan-out group (issue 6): mixed, at FANOUT_SCALE, to FANOUT_NODES TCP agents in one run vs
  // as many single pushes one after another
  {
    group: 'fanout',
    kind: 'full',
    dataset: 'mixed',
    dataDir: FANOUT_DATA,
    scale: FANOUT_SCALE,
    title:
      `Fan-out over loopback TCP: mixed${FANOUT_SCALE === SCALE ? '' : ` at scale ${FANOUT_SCALE}`} to ${FANOUT_NODES} agents ` +
      `in one run vs ${FANOUT_NODES} single pushes one after another (destinations wiped before every run)`,
    tools: ['smartcopy-fanout', 'smartcopy-seq'],
    goal: { me: 'smartcopy-fanout', peer: 'smartcopy-seq', max: 0.3 },
  },
];

// the delta groups have a single dataset: their ids leave it out (delta/insert/rsyncd); so does
// the QUIC group's single file (quic/file1g/smartcopy-quic-16k)
const rowId = (sc, tool) =>
  sc.idBase ? `${sc.idBase}/${tool}` : isDelta(sc) ? `${sc.group}/${sc.kind}/${tool}` : `${sc.group}/${sc.kind}/${sc.dataset}/${tool}`;
/** Groups whose rows push to this run's TCP servers (smartcopy agent, rsync daemon). */
const overTcp = (sc) => sc.group === 'tcp' || sc.group === 'delta';
/** Groups whose rows push to a server started by this run and measure its CPU (not SSH's). */
const overAgent = (sc) => overTcp(sc) || sc.group === 'quic';
/** dsInfo's key: the fan-out group may use mixed at another scale than the others. */
const dataKeyOf = (sc) => ((sc.dataDir ?? DATA) === DATA ? sc.dataset : `${sc.dataset}@${sc.scale}`);
for (const sc of SCENARIOS) sc.selected = sc.tools.filter((t) => ONLY.test(rowId(sc, t)));
const active = SCENARIOS.filter((sc) => sc.selected.length > 0);
if (active.length === 0)
  usageError(
    `--only '${args.only}' matches no row (ids look like local/full/mixed/smartcopy, tcp/resync/small/rsyncd, ` +
      'delta/insert/smartcopy, ssh/full/mixed/rsync-ssh, ssh-delta/insert/smartcopy, quic/file1g/smartcopy-quic-16k, ' +
      'quic/full/mixed/smartcopy-tcp, fanout/full/mixed/smartcopy-seq)',
  );
const tcpActive = active.some(overTcp);
const sshActive = active.some(overSsh);

const missing = new Set();
for (const sc of active) for (const t of sc.selected) if (!TOOLS[t].available) missing.add(t);
for (const t of missing) {
  log(`${TOOLS[t].reason}; skipping its rows`);
  notes.push(`${TOOLS[t].label}: ${TOOLS[t].reason}; its rows were skipped.`);
}

// ---------------------------------------------------------------------------------------------
// datasets, destination filesystem, machine

/** make-dataset.sh's fixed mtime of every dataset entry (2023-11-14 22:13:20 UTC). */
const DATASET_MTIME = 1700000000;
const SCRIPT_DATASETS = new Set(['mixed', 'small', 'delta']);

/**
 * DIR/file1g/file1g.bin, 1 GiB x scale: the bytes make-dataset.sh's `keystream file1g SIZE`
 * would give (AES-128-CTR over zeros, key and IV the first 16 bytes of sha256 of
 * "scbench-key-file1g" / "scbench-iv-file1g"), with its mode and mtimes and a marker
 * DIR/.file1g.complete as its datasets have. Made here because the script builds only its three.
 */
async function makeFile1g(dir, scale) {
  const root = path.join(dir, 'file1g');
  const marker = path.join(dir, '.file1g.complete');
  let done = '';
  try {
    done = fs.readFileSync(marker, 'utf8').trim();
  } catch {
    // not built yet
  }
  if (process.env.FORCE !== '1' && done === `scale=${scale}`) {
    log(`file1g: up to date (${root})`);
    return;
  }
  fs.rmSync(marker, { force: true });
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const size = Math.max(1, Math.floor(2 ** 30 * Number(scale)));
  log(`file1g: building in ${root} (scale ${scale})`);
  const half = (tag) => Buffer.from(crypto.createHash('sha256').update(tag).digest('hex').slice(0, 32), 'hex');
  const cipher = crypto.createCipheriv('aes-128-ctr', half('scbench-key-file1g'), half('scbench-iv-file1g'));
  const zeros = Buffer.alloc(1 << 20);
  const file = path.join(root, 'file1g.bin');
  const fh = await fsp.open(file, 'w', 0o644);
  try {
    for (let off = 0; off < size; off += zeros.length) {
      const n = Math.min(zeros.length, size - off);
      await fh.write(cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n)));
    }
  } finally {
    await fh.close();
  }
  fs.chmodSync(file, 0o644);
  fs.chmodSync(root, 0o755);
  fs.utimesSync(file, DATASET_MTIME, DATASET_MTIME);
  fs.utimesSync(root, DATASET_MTIME, DATASET_MTIME);
  fs.writeFileSync(marker, `scale=${scale}\n`);
}

// one build per data directory: the fan-out group's may be another scale's
const builds = new Map();
for (const sc of active) {
  const dir = sc.dataDir ?? DATA;
  if (!builds.has(dir)) builds.set(dir, { scale: sc.scale ?? SCALE, names: new Set() });
  builds.get(dir).names.add(sc.dataset);
}
const dsInfo = {};
for (const [dir, { scale, names }] of builds) {
  log(`== datasets ${[...names].join(', ')} at scale ${scale} in ${dir}`);
  const scripted = [...names].filter((n) => SCRIPT_DATASETS.has(n));
  if (scripted.length) {
    // its progress goes to stderr with ours: stdout is the report
    const mk = spawnSync(path.join(HERE, 'make-dataset.sh'), [dir, scale], {
      stdio: ['ignore', 2, 2],
      env: { ...process.env, DATASETS: scripted.join(' ') },
    });
    if (mk.status !== 0) {
      log(`make-dataset.sh failed (${mk.error?.message ?? `exit ${mk.status}`})`);
      process.exit(1);
    }
  }
  if (names.has('file1g')) {
    try {
      await makeFile1g(dir, scale);
    } catch (err) {
      log(`building file1g failed: ${err.message}`);
      process.exit(1);
    }
  }
  for (const ds of names) {
    const root = path.join(dir, ds);
    const entries = await walk(root);
    dsInfo[dir === DATA ? ds : `${ds}@${scale}`] = { root, entries, ...treeStats(entries), footprint: tmpfsFootprint(entries) };
  }
}

/** tmpfs bytes of the largest file of the delta dataset (the inserted one). */
function deltaFileFootprint() {
  const sizes = [...dsInfo.delta.entries.values()].filter((e) => e.type === 'file').map((e) => e.size);
  return Math.ceil(Math.max(...sizes) / 4096) * 4096 + 4096;
}

fs.mkdirSync(DSTROOT, { recursive: true });
fs.mkdirSync(LOGDIR, { recursive: true });
let dstNote;
if (isMountPoint(DSTROOT)) {
  dstNote = `${DSTROOT} is already a mount point; used as is and left mounted`;
} else if (args['no-tmpfs']) {
  dstNote = '--no-tmpfs: destinations on the disk';
} else if (process.getuid?.() !== 0) {
  dstNote = 'not root, cannot mount a tmpfs: destinations on the disk';
} else {
  // every tool's last output is kept until verification, so one scenario needs a copy per tool
  // (a delta row holds one target.bin plus, while a run writes, the new version beside it)
  // (a fan-out row writes FANOUT_NODES copies, deleted after each run: one row's at a time)
  const need = Math.max(
    ...active.map((sc) =>
      isDelta(sc)
        ? sc.selected.length * 2 * deltaFileFootprint()
        : sc.group === 'fanout'
          ? FANOUT_NODES * dsInfo[dataKeyOf(sc)].footprint
          : sc.selected.length * dsInfo[dataKeyOf(sc)].footprint,
    ),
  );
  const size = Math.ceil((need * 1.2 + (256 << 20)) / (1 << 20));
  const avail = Math.floor(os.freemem() / (1 << 20));
  if (size > avail * 0.7) {
    dstNote = `a tmpfs would need ${size} MiB, too much of the ${avail} MiB of free memory: destinations on the disk`;
  } else {
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}m,mode=755`, 'scbench-dst', DSTROOT], {
      encoding: 'utf8',
    });
    if (m.status === 0) {
      mountedTmpfs = DSTROOT;
      dstNote = `a ${size} MiB tmpfs mounted by this run, unmounted at exit`;
    } else {
      dstNote = `could not mount a tmpfs (${(m.stderr || m.error?.message || '').trim()}): destinations on the disk`;
    }
  }
}
const dstFs = fsOf(DSTROOT);
log(`destination: ${DSTROOT} on ${dstFs.type}: ${dstNote}`);

// ---------------------------------------------------------------------------------------------
// servers of the TCP group: one smartcopy agent and one rsync daemon on 127.0.0.1, both rooted
// at DSTROOT, started after the tmpfs is mounted there and stopped by cleanup()

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Spawn a server with stdout and stderr in files (nothing to drain); unref'd, cleanup() stops it. */
function spawnServer(name, argv, stem, env = undefined) {
  const out = path.join(LOGDIR, `${stem}.stdout`);
  const err = path.join(LOGDIR, `${stem}.stderr`);
  const outFd = fs.openSync(out, 'w');
  const errFd = fs.openSync(err, 'w');
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', outFd, errFd], env: env ?? process.env });
  fs.closeSync(outFd);
  fs.closeSync(errFd);
  const srv = { name, argv, child, pid: child.pid, out, err, exited: null, spawnError: null };
  child.on('error', (e) => (srv.spawnError = e.message));
  child.on('exit', (code, signal) => (srv.exited = code ?? signal));
  child.unref();
  return srv;
}

const serverDied = (srv) => srv.spawnError ?? (srv.exited !== null ? `exited (${srv.exited})` : null);

/** `smartcopy agent AGENTARGS`, ready once its first line names its port. */
async function startSmartcopyAgent(name, agentArgs, stem, env = undefined) {
  const srv = spawnServer(name, [...smartcopy.argv, 'agent', ...agentArgs], stem, env);
  // 30 s: eight agents start at once on two busy cores in the fan-out group
  for (let i = 0; i < 600; i++) {
    // a whole first line, so a QUIC agent's fingerprint at its end is complete
    const text = fs.readFileSync(srv.out, 'utf8');
    const line = text.includes('\n') ? text.slice(0, text.indexOf('\n')).trim() : '';
    // "(port N)", or "(tcp, port N)" since the agent also serves other protocols
    const m = /\((?:[^()]*, )?port (\d+)\)/.exec(line);
    if (m) {
      srv.port = Number(m[1]);
      srv.ready = line;
      return srv;
    }
    const died = serverDied(srv);
    if (died) {
      srv.failed = `${died}: ${tailOf(srv.err)}`;
      return srv;
    }
    await sleep(50);
  }
  srv.failed = `no ready line after 30 s: ${tailOf(srv.err)}`;
  return srv;
}

const startAgent = () =>
  startSmartcopyAgent('smartcopy agent', ['--protocol', 'tcp', '--bind', '127.0.0.1', '--port', '0', '--root', DSTROOT], 'agent');

/**
 * The QUIC group's agent for one datagram size, rooted at DSTROOT like the TCP one. Its HOME is
 * a temp dir of its own, where it makes its certificate (the user's ~/.smartcopy is left alone,
 * and two agents starting at once do not race for one file); the client runs with the same HOME
 * and pins the fingerprint from the ready line.
 */
async function startQuicAgent(tool) {
  const payload = TOOLS[tool].quicPayload;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'scbench-quic-'));
  tempDirs.add(home);
  const env = { ...process.env, HOME: home };
  const srv = await startSmartcopyAgent(
    `smartcopy QUIC agent (${payload} B)`,
    ['--protocol', 'quic', '--bind', '127.0.0.1', '--port', '0', '--root', DSTROOT, '--quic-payload', String(payload)],
    `agent-quic-${payload}`,
    env,
  );
  srv.env = env;
  if (!srv.failed) {
    const m = /certificate (SHA256:[A-Za-z0-9+/=]+)/.exec(srv.ready);
    if (m) srv.fingerprint = m[1];
    else srv.failed = `no certificate fingerprint in its ready line: ${srv.ready}`;
  }
  return srv;
}

/** The fan-out group's agents, started together, each rooted at its own DSTROOT/fanout-nodes/node-N. */
async function startFanoutAgents() {
  const base = path.join(DSTROOT, 'fanout-nodes');
  scratchDirs.add(base);
  return Promise.all(
    Array.from({ length: FANOUT_NODES }, async (_, i) => {
      const root = path.join(base, `node-${i + 1}`);
      fs.mkdirSync(root, { recursive: true });
      const srv = await startSmartcopyAgent(
        `fan-out agent ${i + 1}`,
        ['--protocol', 'tcp', '--bind', '127.0.0.1', '--port', '0', '--root', root],
        `agent-fanout-${i + 1}`,
      );
      srv.root = root;
      return srv;
    }),
  );
}

/** A free loopback port: bound and released again, so another process could take it first; retried. */
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

async function startRsyncd() {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const asRoot = process.getuid?.() === 0;
    // `munge symlinks` defaults to on without chroot and would rewrite every symlink's target
    fs.writeFileSync(
      RSYNCD_CONF,
      [
        '# rsync daemon of test/bench/run.mjs (generated each run): plain TCP on loopback, the',
        '# peer of `smartcopy SRC 127.0.0.1:PORT:/path` to a smartcopy agent',
        `log file = ${path.join(LOGDIR, 'rsyncd.log')}`,
        'address = 127.0.0.1',
        `port = ${port}`,
        'use chroot = no',
        'munge symlinks = no',
        'max connections = 0',
        'reverse lookup = no',
        '',
        `[${RSYNCD_MODULE}]`,
        `  path = ${DSTROOT}`,
        '  read only = no',
        // as root, like the agent, so -a keeps owners
        ...(asRoot ? ['  uid = root', '  gid = root'] : []),
        '  hosts allow = 127.0.0.1',
        '',
      ].join('\n'),
    );
    const srv = spawnServer(
      'rsync daemon',
      ['rsync', '--daemon', '--no-detach', `--config=${RSYNCD_CONF}`, '--address=127.0.0.1', `--port=${port}`],
      'rsyncd',
    );
    srv.port = port;
    for (let i = 0; i < 100; i++) {
      const died = serverDied(srv);
      if (died) break;
      // listing the modules proves it accepts connections
      const probe = spawnSync('rsync', [`rsync://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: 5000 });
      if (probe.status === 0 && probe.stdout.includes(RSYNCD_MODULE)) {
        srv.ready = `rsync://127.0.0.1:${port}/${RSYNCD_MODULE} -> ${DSTROOT} (config ${RSYNCD_CONF})`;
        return srv;
      }
      await sleep(50);
    }
    lastError = `${serverDied(srv) ?? 'not answering after 5 s'}: ${tailOf(srv.err)} ${tailOf(path.join(LOGDIR, 'rsyncd.log'), 200)}`;
    stopServer(srv);
  }
  return { name: 'rsync daemon', failed: lastError.trim() };
}

const selects = (group, tool) => active.some((sc) => sc.group === group && sc.selected.includes(tool));
if (smartcopy.available && (active.some((sc) => overTcp(sc) && sc.selected.includes('smartcopy')) || selects('quic', 'smartcopy-tcp'))) {
  servers.smartcopy = await startAgent();
  log(servers.smartcopy.failed ? `smartcopy agent failed to start: ${servers.smartcopy.failed}` : servers.smartcopy.ready);
  // the QUIC group's TCP row pushes to the same agent (stopServer stops it once)
  servers['smartcopy-tcp'] = servers.smartcopy;
}
if (tcpActive && active.some((sc) => overTcp(sc) && sc.selected.includes('rsyncd')) && rsyncPath !== null) {
  servers.rsyncd = await startRsyncd();
  log(servers.rsyncd.failed ? `rsync daemon failed to start: ${servers.rsyncd.failed}` : `rsync daemon ${servers.rsyncd.ready}`);
}
for (const tool of ['smartcopy-quic-1452', 'smartcopy-quic-16k']) {
  if (!smartcopy.available || !selects('quic', tool)) continue;
  servers[tool] = await startQuicAgent(tool);
  log(servers[tool].failed ? `${servers[tool].name} failed to start: ${servers[tool].failed}` : servers[tool].ready);
}
/** The fan-out group's agents (also in `servers` as fanout-N, so cleanup() stops them). */
let fanoutNodes = [];
if (smartcopy.available && active.some((sc) => sc.group === 'fanout')) {
  fanoutNodes = await startFanoutAgents();
  fanoutNodes.forEach((srv, i) => (servers[`fanout-${i + 1}`] = srv));
  for (const srv of fanoutNodes) log(srv.failed ? `${srv.name} failed to start: ${srv.failed}` : srv.ready);
}

// The SSH groups' server: a private OpenSSH sshd (sshd.mjs), started after the tmpfs is mounted
// (its sessions write there) and stopped by cleanup(). Every SSH tool, smartcopy's remote agent
// included, runs under it, so its CPU (and its reaped sessions') is the server cpu column.
if (sshActive && active.some((sc) => overSsh(sc) && sc.selected.some((t) => TOOLS[t].available))) {
  try {
    servers.sshd = await startSshd({ logFile: path.join(LOGDIR, 'sshd.stderr') });
    log(servers.sshd.ready);
  } catch (err) {
    servers.sshd = { name: 'sshd', failed: err.message };
    log(`sshd failed to start: ${err.message}`);
  }
}

const gitRev = firstLine(['git', '-C', REPO, 'describe', '--always', '--dirty']);
const machine = {
  date: new Date().toISOString(),
  cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
  cores: os.availableParallelism(),
  memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  kernel: `${os.type()} ${os.release()}`,
  node: process.version,
  dstFs: dstFs.type,
  dstFsSource: dstFs.source,
  dstNote,
  srcFs: fsOf(DATA).type,
  rsync: rsyncPath ? firstLine(['rsync', '--version']) : null,
  cp: firstLine(['cp', '--version']),
  smartcopy: smartcopy.available ? smartcopy.source : null,
  smartcopyRev: gitRev,
  agent: servers.smartcopy ? (servers.smartcopy.ready ?? `failed: ${servers.smartcopy.failed}`) : null,
  quicAgents: ['smartcopy-quic-1452', 'smartcopy-quic-16k']
    .filter((t) => servers[t])
    .map((t) => servers[t].ready ?? `${servers[t].name} failed: ${servers[t].failed}`),
  fanoutAgents: fanoutNodes.map((srv) => srv.ready ?? `${srv.name} failed: ${srv.failed}`),
  rsyncd: servers.rsyncd ? (servers.rsyncd.ready ?? `failed: ${servers.rsyncd.failed}`) : null,
  sshd: servers.sshd ? (servers.sshd.ready ?? `failed: ${servers.sshd.failed}`) : null,
  ssh: sshActive && sshPath ? firstLine(['ssh', '-V']) : null,
  sshCipher: sshActive ? BENCH_CIPHER : null,
  loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
};

// ---------------------------------------------------------------------------------------------
// verification

/** Content with diff(1), then size / mtime (to the second) / mode / presence with a walk. */
async function verify(src, dst, srcEntries) {
  try {
    await fsp.lstat(dst);
  } catch (err) {
    return { status: 'NO-OUTPUT', content: { status: 'error', error: `${dst}: ${err.code}` }, meta: { count: null, sample: [] } };
  }
  const d = await capture(['diff', '-r', '-q', '--no-dereference', src, dst]);
  let content;
  if (d.code === 0) content = { status: 'ok', diffs: 0 };
  else if (d.code === 1) content = { status: 'differ', diffs: d.stdoutLines, sample: d.stdout.split('\n').filter(Boolean).slice(0, 5) };
  else content = { status: 'error', error: (d.stderr || d.error || `exit ${d.code}`).trim().slice(0, 300) };

  const mismatches = [];
  let dstEntries;
  try {
    dstEntries = await walk(dst);
  } catch (err) {
    return { status: `UNREADABLE (${err.code})`, content, meta: { count: null, error: err.message, sample: [] } };
  }
  for (const [rel, s] of srcEntries) {
    const t = dstEntries.get(rel);
    if (!t) {
      mismatches.push({ path: rel, what: 'missing' });
      continue;
    }
    if (s.type !== t.type) mismatches.push({ path: rel, what: 'type', src: s.type, dst: t.type });
    else {
      if (s.type === 'file' && s.size !== t.size) mismatches.push({ path: rel, what: 'size', src: s.size, dst: t.size });
      if (s.mtimeS !== t.mtimeS) mismatches.push({ path: rel, what: 'mtime', src: s.mtimeS, dst: t.mtimeS });
      // Linux symlinks are always 0777; their mode carries no information
      if (s.type !== 'symlink' && s.mode !== t.mode)
        mismatches.push({ path: rel, what: 'mode', src: s.mode.toString(8), dst: t.mode.toString(8) });
    }
  }
  for (const rel of dstEntries.keys()) if (!srcEntries.has(rel)) mismatches.push({ path: rel, what: 'extra' });

  const parts = [];
  if (content.status === 'differ') parts.push(`CONTENT-DIFF:${content.diffs}`);
  if (content.status === 'error') parts.push('DIFF-ERROR');
  if (mismatches.length) parts.push(`meta:${mismatches.length}`);
  return {
    status: parts.length ? parts.join(' ') : 'ok',
    content,
    meta: { count: mismatches.length, sample: mismatches.slice(0, 20) },
  };
}

// ---------------------------------------------------------------------------------------------
// measurement

const results = {
  machine,
  args: { scale: SCALE, runs: RUNS, warmup: WARMUP, only: args.only, data: DATA, fanoutScale: FANOUT_SCALE, fanoutData: FANOUT_DATA },
  scenarios: [],
  notes,
};
const stamp = machine.date.replace(/[:.]/g, '-');
const resultsFile = path.join(SCBENCH, `results-${stamp}.json`);
const saveResults = () => fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2));

function wipe(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  // flush the previous run's dirty pages (and the rm) now, not during the next timed run
  spawnSync('sync');
}

/**
 * Where a row's tool writes: `base` (this row's scratch directory under DSTROOT), `dst` (the
 * local path that is wiped and verified) and `target` (the operand the tool gets). `run` puts
 * the destination one level deeper, in a directory of its own (TCP full pushes, see wipeFor).
 */
function rowTarget(sc, tool, run) {
  const dirName = sc.group === 'local' ? `${sc.kind}-${tool}` : `${sc.group}-${sc.kind}-${tool}`;
  const base = path.join(DSTROOT, dirName);
  const rel = run === undefined ? `${dirName}/${sc.dataset}` : `${dirName}/${run}/${sc.dataset}`;
  const dst = path.join(DSTROOT, rel);
  if (sc.group === 'local') return { base, dst, target: dst };
  // over SSH every run starts its own remote process (agent, rsync, sftp-server): nothing on
  // the far side outlives a run, so the same path can be wiped and reused, as locally
  if (overSsh(sc)) return { base, dst, target: `${servers.sshd?.alias}:${dst}` };
  const port = servers[tool]?.port;
  if (isQuicTool(tool)) return { base, dst, target: `quic://127.0.0.1:${port}/${rel}` };
  if (tool === 'smartcopy' || tool === 'smartcopy-tcp') return { base, dst, target: `127.0.0.1:${port}:/${rel}` };
  return { base, dst, target: `rsync://127.0.0.1:${port}/${RSYNCD_MODULE}/${rel}` };
}

/**
 * An empty destination for the next full run of row `r`. Over TCP each run gets a path never
 * used before (`tcp-full-TOOL/N/DATASET`, the previous ones deleted): the servers outlive the
 * runs, and a server that remembers the tree it wrote last time (the agent caches directories
 * it has checked) must meet a fresh destination every time, as on a first push, not one
 * deleted behind its back.
 */
function wipeFor(sc, r, ds) {
  if (!freshPathPerRun(sc)) {
    wipe(r.dst);
    return;
  }
  r.seq = (r.seq ?? 0) + 1;
  const t = rowTarget(sc, r.tool, r.seq);
  fs.rmSync(r.base, { recursive: true, force: true });
  r.dst = t.dst;
  r.argv = toolArgv(sc, r.tool, ds.root, t.target);
  wipe(r.dst);
}

/** The server a row's tool talks to: its own over TCP and QUIC, the shared sshd over SSH, none locally. */
const serverOf = (sc, tool) => (overSsh(sc) ? servers.sshd : overAgent(sc) ? servers[tool] : null);

/** Why a row's server cannot serve it (TCP, QUIC and SSH groups), or null. */
function serverProblem(sc, tool) {
  if (!overAgent(sc) && !overSsh(sc)) return null;
  const srv = serverOf(sc, tool);
  if (!srv) return `no server for ${tool}`;
  if (srv.failed) return `${srv.name} did not start: ${srv.failed}`;
  const died = serverDied(srv);
  if (died || !procAlive(srv.pid)) return `${srv.name} ${died ?? 'is gone'}; see ${srv.err}`;
  return null;
}

/**
 * The server's CPU seconds so far, its reaped children included (the rsync daemon forks one
 * per connection). Waits up to 2 s for such children to finish and be reaped first, so a run's
 * server work lands in that run.
 */
async function serverCpuNow(srv) {
  for (let i = 0; i < 200 && childPids(srv.pid).length > 0; i++) await sleep(10);
  const c = procCpu(srv.pid);
  return c ? c.self + c.children : null;
}

/** The last `summary` event of a smartcopy --json run. */
function summaryOf(c) {
  for (const line of c.stdoutTail.trim().split('\n').reverse()) {
    try {
      const ev = JSON.parse(line);
      if (ev && ev.event === 'summary') return ev;
    } catch {
      // not an NDJSON line (e.g. a placeholder command); keep looking
    }
  }
  return null;
}

/** rsync --stats: "Total bytes sent: 1,234" (digit grouping depends on the version and locale). */
function rsyncStatsOf(c) {
  const num = (re) => {
    const m = re.exec(c.stdout);
    return m ? Number(m[1].replace(/[,.']/g, '')) : null;
  };
  const sent = num(/Total bytes sent:\s*([\d,.']+)/);
  const received = num(/Total bytes received:\s*([\d,.']+)/);
  return sent === null || received === null ? null : { sent, received, total: sent + received };
}

/**
 * The rounds a row takes part in: [firstRound, endRound) of the WARMUP + RUNS rounds, its
 * warm-up ones last among the warm-ups. A scenario's `limits` give a slow tool (scp on many
 * small files) fewer runs than the others; the run's --runs / --warmup still cap them.
 */
function runSpan(sc, tool) {
  const lim = sc.limits?.[tool];
  const warmup = Math.min(WARMUP, lim?.warmup ?? WARMUP);
  const runs = Math.min(RUNS, lim?.runs ?? RUNS);
  return { firstRound: WARMUP - warmup, endRound: WARMUP + runs, runs, warmup };
}

/** "scp: 2 timed runs, no warm-up" for the tools a scenario's `limits` cut short, or ''. */
function limitsNote(sc) {
  const parts = sc.rows
    .filter((r) => r.runs !== RUNS || r.warmup !== WARMUP)
    .map((r) => `${r.label}: ${r.runs} timed run${r.runs > 1 ? 's' : ''}${r.warmup === 0 ? ', no warm-up' : ` after ${r.warmup} warm-up`}`);
  return parts.length ? ` (${parts.join('; ')}, to save time)` : '';
}

async function runScenario(sc) {
  const ds = dsInfo[dataKeyOf(sc)];
  const tag = `${sc.group}/${sc.kind}/${sc.dataset}`;
  const tcp = sc.group === 'tcp';
  // a server on the other end whose CPU is measured: the TCP and SSH groups
  const remote = sc.group !== 'local';
  const rows = sc.selected.map((tool) => {
    const { base, dst, target } = rowTarget(sc, tool);
    const problem = TOOLS[tool].available ? serverProblem(sc, tool) : null;
    const argv = TOOLS[tool].available && !problem ? toolArgv(sc, tool, ds.root, target) : null;
    return {
      id: rowId(sc, tool),
      tool,
      label: TOOLS[tool].label,
      argv,
      base,
      dst,
      status: !TOOLS[tool].available ? 'skipped' : problem ? 'FAILED' : 'ok',
      error: !TOOLS[tool].available ? TOOLS[tool].reason : (problem ?? undefined),
      times: [],
      warmupTimes: [],
      cpu: [],
      serverCpu: remote ? [] : undefined,
      // a QUIC client runs with its agent's HOME (see startQuicAgent)
      env: serverOf(sc, tool)?.env,
      ...runSpan(sc, tool),
    };
  });
  const live = () => rows.filter((r) => r.status === 'ok');
  const logName = (r) => r.id.replaceAll('/', '.');
  for (const r of live()) scratchDirs.add(r.base);

  log(`== ${tag}: ${ds.files} files, ${fmtBytes(ds.bytes)}; warming the page cache`);
  await warmCache(ds.root, ds.entries);
  const loadBefore = os.loadavg()[0];

  if (sc.kind === 'resync') {
    // bring each destination up to date with the tool itself (untimed), as a user would
    for (const r of live()) {
      wipe(r.dst);
      const res = await runTimed(r.argv, path.join(LOGDIR, `${logName(r)}.setup.stderr`), r.env);
      if (!res.ok) {
        r.status = 'FAILED';
        r.error = `setup run: ${res.error ?? `exit ${res.code ?? res.signal}`} ${tailOf(path.join(LOGDIR, `${logName(r)}.setup.stderr`))}`.trim();
      }
    }
    spawnSync('sync');
  }

  // Round-robin with a rotating order: slow drift on a shared machine (other load, page
  // cache, writeback) then spreads over all tools instead of landing on whichever ran last.
  const total = WARMUP + RUNS;
  for (let round = 0; round < total; round++) {
    const order = live();
    for (let i = 0; i < order.length; i++) {
      const r = order[(i + round) % order.length];
      if (r.status !== 'ok' || round < r.firstRound || round >= r.endRound) continue;
      const problem = serverProblem(sc, r.tool);
      if (problem) {
        r.status = 'FAILED';
        r.error = problem;
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      if (sc.kind === 'full') wipeFor(sc, r, ds);
      const srv = serverOf(sc, r.tool);
      const srvCpu0 = srv ? await serverCpuNow(srv) : null;
      const errFile = path.join(LOGDIR, `${logName(r)}.stderr`);
      const res = await runTimed(r.argv, errFile, r.env);
      if (!res.ok) {
        r.status = 'FAILED';
        r.error = `${res.error ?? `exit ${res.code ?? res.signal}`}: ${tailOf(errFile)}`.trim();
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      if (round < WARMUP) {
        r.warmupTimes.push(res.seconds);
        continue;
      }
      r.times.push(res.seconds);
      r.cpu.push(res.cpu);
      if (srv) {
        const srvCpu1 = await serverCpuNow(srv);
        r.serverCpu.push(srvCpu0 != null && srvCpu1 != null ? srvCpu1 - srvCpu0 : null);
      }
    }
    log(`   round ${round + 1}/${total}${round < WARMUP ? ' (warm-up)' : ''} done`);
  }
  const loadAfter = os.loadavg()[0];

  const medianOrNull = (xs) => (xs && xs.length && xs.every((x) => x != null) ? median(xs) : null);
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    r.median = median(r.times);
    r.min = Math.min(...r.times);
    r.max = Math.max(...r.times);
    r.MBps = ds.bytes / r.median / 1e6;
    r.MiBps = ds.bytes / r.median / 2 ** 20;
    r.filesPerS = ds.files / r.median;
    r.cpuMedian = medianOrNull(r.cpu);
    if (remote) r.serverCpuMedian = medianOrNull(r.serverCpu);
    log(`   verifying ${r.label}`);
    r.verify = await verify(ds.root, r.dst, ds.entries);
  }

  // One extra untimed run per tool after verification: smartcopy's own account (--json summary:
  // did a no-change run really skip everything, and its bytes on the wire) and, over TCP,
  // rsync's --stats byte counts. A full scenario wipes the destination first, as the timed runs.
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    const wantSummary = r.tool === 'smartcopy' && (sc.kind === 'resync' || tcp);
    const wantStats = r.tool === 'rsyncd';
    if (!wantSummary && !wantStats) continue;
    if (sc.kind === 'full') wipeFor(sc, r, ds);
    if (wantSummary) {
      log(`   one more ${r.label} run with --json`);
      const c = await capture([...r.argv, '--json']);
      r.summary = summaryOf(c);
      if (!r.summary) r.summaryError = `no summary event from --json (exit ${c.code}) ${c.stderr.trim().slice(0, 200)}`;
      else if (tcp) r.wire = { total: r.summary.bytesOnWire, source: 'bytesOnWire of --json summary' };
    } else {
      log(`   one more ${r.label} run with --stats`);
      const c = await capture([r.argv[0], '--stats', ...r.argv.slice(1)]);
      const st = c.code === 0 ? rsyncStatsOf(c) : null;
      if (st) r.wire = { ...st, source: 'rsync --stats: total bytes sent + received' };
      else r.wireError = `rsync --stats (exit ${c.code}): ${(c.stderr || c.error || 'no "Total bytes" lines').trim().slice(0, 200)}`;
    }
  }
  for (const r of rows) fs.rmSync(r.base, { recursive: true, force: true });

  const out = {
    group: sc.group,
    kind: sc.kind,
    dataset: sc.dataset,
    title: sc.title,
    bytes: ds.bytes,
    files: ds.files,
    entryCount: ds.entryCount,
    load1Before: +loadBefore.toFixed(2),
    load1After: +loadAfter.toFixed(2),
    goal: sc.goal,
    limits: sc.limits,
    rows: rows.map(({ dst, base, seq, firstRound, endRound, env, ...r }) => r),
  };
  out.goalResult = judge(out);
  if (sc.goal.minMiBps) out.rowGoals = judgeRates(out);
  results.scenarios.push(out);
  saveResults();
  return out;
}

// ---------------------------------------------------------------------------------------------
// the delta groups: one edited file pushed onto a copy of its original, over loopback TCP
// (delta) or through the private sshd (ssh-delta)

/** Where a delta row writes: `dir` (kept for the whole run), `dst` and the tool's operand. */
function deltaTarget(sc, tool) {
  const dirName = `${sc.group}-${tool === 'rsyncd' || tool === 'rsync-ssh' ? 'rsync' : tool}`;
  const dir = path.join(DSTROOT, dirName);
  const dst = path.join(dir, 'target.bin');
  if (overSsh(sc)) return { dir, dst, target: `${servers.sshd?.alias}:${dst}` };
  const port = servers[tool]?.port;
  const target =
    tool === 'smartcopy'
      ? `127.0.0.1:${port}:/${dirName}/target.bin`
      : `rsync://127.0.0.1:${port}/${RSYNCD_MODULE}/${dirName}/target.bin`;
  return { dir, dst, target };
}

/**
 * A fresh copy of base.bin as the row's target, with base.bin's mode and mtime: the state a
 * user's earlier copy would be in. The file is replaced, never its directory (the agent caches
 * directories it has checked; see wipeFor). Anything else in the directory (a temporary file
 * a failed run left behind) goes too, so it cannot turn up as an extra in verification.
 */
function putBase(r, base) {
  fs.mkdirSync(r.dir, { recursive: true });
  for (const name of fs.readdirSync(r.dir)) fs.rmSync(path.join(r.dir, name), { recursive: true, force: true });
  fs.copyFileSync(base.path, r.dst);
  fs.chmodSync(r.dst, base.mode);
  fs.utimesSync(r.dst, base.atime, base.mtime);
  spawnSync('sync');
}

/** cmp(1) of the file, then size / mtime (to the second) / mode, and no other files beside it. */
async function verifyFile(src, dst, dir) {
  let st;
  try {
    st = await fsp.stat(dst);
  } catch (err) {
    return { status: 'NO-OUTPUT', content: { status: 'error', error: `${dst}: ${err.code}` }, meta: { count: null, sample: [] } };
  }
  const c = await capture(['cmp', src, dst]);
  let content;
  if (c.code === 0) content = { status: 'ok', diffs: 0 };
  else if (c.code === 1) content = { status: 'differ', diffs: 1, sample: [`${c.stdout}${c.stderr}`.trim().slice(0, 300)] };
  else content = { status: 'error', error: (c.stderr || c.error || `exit ${c.code}`).trim().slice(0, 300) };
  const s = await fsp.stat(src);
  const mismatches = [];
  if (s.size !== st.size) mismatches.push({ path: 'target.bin', what: 'size', src: s.size, dst: st.size });
  const sec = (x) => Math.floor(x.mtimeMs / 1000);
  if (sec(s) !== sec(st)) mismatches.push({ path: 'target.bin', what: 'mtime', src: sec(s), dst: sec(st) });
  if ((s.mode & 0o7777) !== (st.mode & 0o7777))
    mismatches.push({ path: 'target.bin', what: 'mode', src: (s.mode & 0o7777).toString(8), dst: (st.mode & 0o7777).toString(8) });
  for (const name of await fsp.readdir(dir)) if (name !== 'target.bin') mismatches.push({ path: name, what: 'extra' });
  const parts = [];
  if (content.status === 'differ') parts.push('CONTENT-DIFF:1');
  if (content.status === 'error') parts.push('CMP-ERROR');
  if (mismatches.length) parts.push(`meta:${mismatches.length}`);
  return { status: parts.length ? parts.join(' ') : 'ok', content, meta: { count: mismatches.length, sample: mismatches } };
}

async function runDeltaScenario(sc) {
  const ds = dsInfo[sc.dataset];
  const src = path.join(ds.root, `changed-${sc.kind}.bin`);
  const baseStat = fs.statSync(path.join(ds.root, 'base.bin'));
  const base = { path: path.join(ds.root, 'base.bin'), mode: baseStat.mode & 0o7777, atime: baseStat.atime, mtime: baseStat.mtime };
  const bytes = fs.statSync(src).size;
  const rows = sc.selected.map((tool) => {
    const { dir, dst, target } = deltaTarget(sc, tool);
    const problem = TOOLS[tool].available ? serverProblem(sc, tool) : null;
    return {
      id: rowId(sc, tool),
      tool,
      label: TOOLS[tool].label,
      argv: TOOLS[tool].available && !problem ? toolArgv(sc, tool, src, target) : null,
      dir,
      dst,
      status: !TOOLS[tool].available ? 'skipped' : problem ? 'FAILED' : 'ok',
      error: !TOOLS[tool].available ? TOOLS[tool].reason : (problem ?? undefined),
      times: [],
      warmupTimes: [],
      cpu: [],
      serverCpu: [],
    };
  });
  const live = () => rows.filter((r) => r.status === 'ok');
  const logName = (r) => r.id.replaceAll('/', '.');
  for (const r of live()) scratchDirs.add(r.dir);

  log(`== ${sc.group}/${sc.kind}: ${path.basename(src)} (${fmtBytes(bytes)}) onto base.bin (${fmtBytes(baseStat.size)}); warming the page cache`);
  const warm = new Map([['base.bin', { type: 'file' }], [path.basename(src), { type: 'file' }]]);
  await warmCache(ds.root, warm);
  const loadBefore = os.loadavg()[0];

  const total = WARMUP + RUNS;
  for (let round = 0; round < total; round++) {
    const order = live();
    for (let i = 0; i < order.length; i++) {
      const r = order[(i + round) % order.length];
      if (r.status !== 'ok') continue;
      const problem = serverProblem(sc, r.tool);
      if (problem) {
        r.status = 'FAILED';
        r.error = problem;
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      putBase(r, base);
      const srv = serverOf(sc, r.tool);
      const srvCpu0 = await serverCpuNow(srv);
      const errFile = path.join(LOGDIR, `${logName(r)}.stderr`);
      const res = await runTimed(r.argv, errFile);
      if (!res.ok) {
        r.status = 'FAILED';
        r.error = `${res.error ?? `exit ${res.code ?? res.signal}`}: ${tailOf(errFile)}`.trim();
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      if (round < WARMUP) {
        r.warmupTimes.push(res.seconds);
        continue;
      }
      r.times.push(res.seconds);
      r.cpu.push(res.cpu);
      const srvCpu1 = await serverCpuNow(srv);
      r.serverCpu.push(srvCpu0 != null && srvCpu1 != null ? srvCpu1 - srvCpu0 : null);
    }
    log(`   round ${round + 1}/${total}${round < WARMUP ? ' (warm-up)' : ''} done`);
  }
  const loadAfter = os.loadavg()[0];

  const medianOrNull = (xs) => (xs && xs.length && xs.every((x) => x != null) ? median(xs) : null);
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    r.median = median(r.times);
    r.min = Math.min(...r.times);
    r.max = Math.max(...r.times);
    r.MBps = bytes / r.median / 1e6;
    r.filesPerS = 1 / r.median;
    r.cpuMedian = medianOrNull(r.cpu);
    r.serverCpuMedian = medianOrNull(r.serverCpu);
    log(`   verifying ${r.label}`);
    r.verify = await verifyFile(src, r.dst, r.dir);
  }

  // one extra run each, again onto a fresh base.bin: smartcopy's --json summary, rsync's --stats
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    putBase(r, base);
    if (r.tool === 'smartcopy') {
      log(`   one more ${r.label} run with --json`);
      const c = await capture([...r.argv, '--json']);
      r.summary = summaryOf(c);
      if (!r.summary) r.summaryError = `no summary event from --json (exit ${c.code}) ${c.stderr.trim().slice(0, 200)}`;
      else if (typeof r.summary.bytesOnWire === 'number') r.wire = { total: r.summary.bytesOnWire, source: 'bytesOnWire of --json summary' };
      else r.summaryError = `--json summary has no bytesOnWire: ${JSON.stringify(r.summary).slice(0, 200)}`;
    } else {
      log(`   one more ${r.label} run with --stats`);
      const c = await capture([r.argv[0], '--stats', ...r.argv.slice(1)]);
      const st = c.code === 0 ? rsyncStatsOf(c) : null;
      if (st) {
        r.wire = { ...st, source: 'rsync --stats: total bytes sent + received' };
        const m = /Matched data:\s*([\d,.']+)/.exec(c.stdout);
        const l = /Literal data:\s*([\d,.']+)/.exec(c.stdout);
        if (m && l) r.rsyncDelta = { matched: Number(m[1].replace(/[,.']/g, '')), literal: Number(l[1].replace(/[,.']/g, '')) };
      } else r.wireError = `rsync --stats (exit ${c.code}): ${(c.stderr || c.error || 'no "Total bytes" lines').trim().slice(0, 200)}`;
    }
  }
  // the directories stay (the agent knows them); the 1 GiB files would only fill the tmpfs
  for (const r of rows) fs.rmSync(r.dst, { force: true });

  const out = {
    group: sc.group,
    kind: sc.kind,
    dataset: sc.dataset,
    file: path.basename(src),
    title: sc.title,
    bytes,
    baseBytes: baseStat.size,
    files: 1,
    entryCount: 1,
    load1Before: +loadBefore.toFixed(2),
    load1After: +loadAfter.toFixed(2),
    goal: sc.goal,
    rows: rows.map(({ dst, dir, ...r }) => r),
  };
  out.goalResult = judge(out);
  out.wireGoalResult = judgeWire(out);
  results.scenarios.push(out);
  saveResults();
  return out;
}

/** The delta groups' second goal: no more bytes on the wire than rsync. */
function judgeWire(sc) {
  const text = `bytes ≤ ${TOOLS[sc.goal.peer].label}'s`;
  const me = sc.rows.find((r) => r.tool === 'smartcopy');
  const peer = sc.rows.find((r) => r.tool === sc.goal.peer);
  if (!me || !peer) return { text, verdict: 'n/a', why: 'not selected' };
  if (me.status === 'skipped') return { text, verdict: 'n/a', why: 'smartcopy not available' };
  if (me.status !== 'ok') return { text, verdict: 'MISSED', why: 'smartcopy failed' };
  if (!me.wire) return { text, verdict: 'MISSED', why: 'no bytesOnWire from smartcopy' };
  if (peer.status !== 'ok' || !peer.wire) return { text, verdict: 'n/a', why: `no ${peer.label} byte count` };
  const ratio = me.wire.total / peer.wire.total;
  if (me.verify.status !== 'ok') return { text, verdict: 'MISSED', ratio, why: `verify ${me.verify.status}` };
  return { text, verdict: me.wire.total <= peer.wire.total ? 'MET' : 'MISSED', ratio };
}

/** test/bench/matcher.mjs, when present: the delta matcher's CPU cost in MiB/s on one core. */
async function runMatcher() {
  const file = path.join(HERE, 'matcher.mjs');
  if (!fs.existsSync(file)) return null;
  log('== matcher micro-benchmark (test/bench/matcher.mjs)');
  const c = await capture([process.execPath, file]);
  const res = { argv: [process.execPath, file], code: c.code, signal: c.signal ?? null, stdout: c.stdout, stderr: c.stderr };
  results.matcher = res;
  saveResults();
  return res;
}

/**
 * The time goal's verdict; null for a scenario without one (`max: null`, or the QUIC group's
 * rates). The judged row is smartcopy's, or `goal.me` (the fan-out row).
 */
function judge(sc) {
  if (sc.goal.max == null) return null;
  const me = sc.rows.find((r) => r.tool === (sc.goal.me ?? 'smartcopy'));
  const peer = sc.rows.find((r) => r.tool === sc.goal.peer);
  const text = `≤ ${String(sc.goal.max.toFixed(2)).replace(/0$/, '')}× ${TOOLS[sc.goal.peer].label}`;
  if (!me || !peer) return { text, verdict: 'n/a', why: 'not selected' };
  if (me.status === 'skipped') return { text, verdict: 'n/a', why: 'smartcopy not available' };
  if (me.status !== 'ok') return { text, verdict: 'MISSED', why: 'smartcopy failed' };
  if (peer.status !== 'ok') return { text, verdict: 'n/a', why: `no ${peer.label} result` };
  const ratio = me.median / peer.median;
  if (me.verify.status !== 'ok') return { text, verdict: 'MISSED', ratio, why: `verify ${me.verify.status}` };
  return { text, verdict: ratio <= sc.goal.max ? 'MET' : 'MISSED', ratio };
}

/** The QUIC group's goals: each QUIC row's MiB/s of data (median run) against its floor. */
function judgeRates(sc) {
  return Object.entries(sc.goal.minMiBps).map(([tool, min]) => {
    const text = `≥ ${min} MiB/s`;
    const r = sc.rows.find((x) => x.tool === tool);
    if (!r) return { tool, text, verdict: 'n/a', why: 'not selected' };
    if (r.status === 'skipped') return { tool, text, verdict: 'n/a', why: 'smartcopy not available' };
    if (r.status !== 'ok') return { tool, text, verdict: 'MISSED', why: 'failed' };
    if (r.verify.status !== 'ok') return { tool, text, verdict: 'MISSED', rate: r.MiBps, why: `verify ${r.verify.status}` };
    return { tool, text, verdict: r.MiBps >= min ? 'MET' : 'MISSED', rate: r.MiBps };
  });
}

// ---------------------------------------------------------------------------------------------
// the fan-out group: one source to FANOUT_NODES TCP agents on loopback, in one smartcopy run or
// in as many single pushes one after another

/** Why the fan-out agents cannot serve a run, or null. */
function fanoutProblem() {
  if (fanoutNodes.length === 0) return 'no fan-out agents';
  for (const srv of fanoutNodes) {
    if (srv.failed) return `${srv.name} did not start: ${srv.failed}`;
    const died = serverDied(srv);
    if (died || !procAlive(srv.pid)) return `${srv.name} ${died ?? 'is gone'}; see ${srv.err}`;
  }
  return null;
}

/** All the fan-out agents' CPU seconds so far; null when one is gone. */
async function fanoutCpuNow() {
  let sum = 0;
  for (const srv of fanoutNodes) {
    const c = await serverCpuNow(srv);
    if (c == null) return null;
    sum += c;
  }
  return sum;
}

/** verify() of every node's copy; `status` is ok only when all are, else the bad nodes by status. */
async function verifyNodes(src, entries, dsts) {
  const nodes = [];
  for (const [i, dst] of dsts.entries()) nodes.push({ node: i + 1, ...(await verify(src, dst, entries)) });
  const byStatus = new Map();
  for (const n of nodes.filter((x) => x.status !== 'ok')) byStatus.set(n.status, [...(byStatus.get(n.status) ?? []), n.node]);
  const status = byStatus.size
    ? [...byStatus].map(([st, ns]) => `${st} on node${ns.length > 1 ? 's' : ''} ${ns.join(',')}`).join('; ')
    : 'ok';
  return { status, nodes };
}

async function runFanoutScenario(sc) {
  const ds = dsInfo[dataKeyOf(sc)];
  const tag = `${sc.group}/${sc.kind}/${sc.dataset}`;
  const problem0 = smartcopy.available ? fanoutProblem() : null;
  const rows = sc.selected.map((tool) => ({
    id: rowId(sc, tool),
    tool,
    label: TOOLS[tool].label,
    argvs: null,
    status: !TOOLS[tool].available ? 'skipped' : problem0 ? 'FAILED' : 'ok',
    error: !TOOLS[tool].available ? TOOLS[tool].reason : (problem0 ?? undefined),
    times: [],
    warmupTimes: [],
    cpu: [],
    serverCpu: [],
    seq: 0,
    ...runSpan(sc, tool),
  }));
  const live = () => rows.filter((r) => r.status === 'ok');
  const logName = (r) => r.id.replaceAll('/', '.');

  /**
   * A row's next run: on every node a path never used before (as wipeFor does for the TCP
   * group: the agents cache directories they have checked), and the commands that fill them.
   */
  const nextRun = (r) => {
    r.seq++;
    const rel = `fanout-${r.tool}/${r.seq}/${sc.dataset}`;
    const dsts = fanoutNodes.map((n) => path.join(n.root, rel));
    for (const d of dsts) fs.mkdirSync(path.dirname(d), { recursive: true });
    spawnSync('sync');
    const targets = fanoutNodes.map((n) => `127.0.0.1:${n.port}:/${rel}`);
    r.argvs =
      r.tool === 'smartcopy-fanout'
        ? [[...smartcopy.argv, ds.root, ...targets]]
        : targets.map((t) => [...smartcopy.argv, ds.root, t]);
    return dsts;
  };
  // Each run's copies go as soon as it is timed (and, the last time, verified): only one run's
  // FANOUT_NODES copies are ever on the destination, which is what the tmpfs is sized for.
  const clear = (r) => {
    for (const n of fanoutNodes) fs.rmSync(path.join(n.root, `fanout-${r.tool}`), { recursive: true, force: true });
    spawnSync('sync');
  };

  log(`== ${tag}: ${ds.files} files, ${fmtBytes(ds.bytes)} to each of ${FANOUT_NODES} agents; warming the page cache`);
  await warmCache(ds.root, ds.entries);
  const loadBefore = os.loadavg()[0];

  const total = WARMUP + RUNS;
  for (let round = 0; round < total; round++) {
    const order = live();
    for (let i = 0; i < order.length; i++) {
      const r = order[(i + round) % order.length];
      if (r.status !== 'ok' || round < r.firstRound || round >= r.endRound) continue;
      const problem = fanoutProblem();
      if (problem) {
        r.status = 'FAILED';
        r.error = problem;
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      const dsts = nextRun(r);
      const srvCpu0 = await fanoutCpuNow();
      // the one-by-one row is timed as one: the sum of its pushes' times and CPU
      let seconds = 0;
      let cpu = 0;
      let failed = null;
      for (const [k, argv] of r.argvs.entries()) {
        const single = r.argvs.length > 1;
        const errFile = path.join(LOGDIR, `${logName(r)}${single ? `.node-${k + 1}` : ''}.stderr`);
        const res = await runTimed(argv, errFile);
        if (!res.ok) {
          failed = `${single ? `push to node ${k + 1}: ` : ''}${res.error ?? `exit ${res.code ?? res.signal}`}: ${tailOf(errFile)}`.trim();
          break;
        }
        seconds += res.seconds;
        cpu = cpu == null || res.cpu == null ? null : cpu + res.cpu;
      }
      if (failed) {
        r.status = 'FAILED';
        r.error = failed;
        log(`   ${r.label}: FAILED (${r.error})`);
        clear(r);
        continue;
      }
      if (round < WARMUP) r.warmupTimes.push(seconds);
      else {
        r.times.push(seconds);
        r.cpu.push(cpu);
        const srvCpu1 = await fanoutCpuNow();
        r.serverCpu.push(srvCpu0 != null && srvCpu1 != null ? srvCpu1 - srvCpu0 : null);
      }
      if (round === r.endRound - 1) {
        log(`   verifying ${r.label} on ${dsts.length} nodes`);
        r.verify = await verifyNodes(ds.root, ds.entries, dsts);
      }
      clear(r);
    }
    log(`   round ${round + 1}/${total}${round < WARMUP ? ' (warm-up)' : ''} done`);
  }
  const loadAfter = os.loadavg()[0];

  const medianOrNull = (xs) => (xs.length && xs.every((x) => x != null) ? median(xs) : null);
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    r.median = median(r.times);
    r.min = Math.min(...r.times);
    r.max = Math.max(...r.times);
    r.MiBps = ds.bytes / r.median / 2 ** 20;
    r.allMiBps = (FANOUT_NODES * ds.bytes) / r.median / 2 ** 20;
    r.cpuMedian = medianOrNull(r.cpu);
    r.serverCpuMedian = medianOrNull(r.serverCpu);
  }

  // one more, untimed fan-out run with --json: its per-node results and how often the source
  // was read (the block cache's counters)
  const fan = rows.find((r) => r.tool === 'smartcopy-fanout' && r.status === 'ok');
  if (fan) {
    log(`   one more ${fan.label} run with --json`);
    nextRun(fan);
    const c = await capture([...fan.argvs[0], '--json']);
    fan.summary = summaryOf(c);
    if (!fan.summary) fan.summaryError = `no summary event from --json (exit ${c.code}) ${c.stderr.trim().slice(0, 200)}`;
    clear(fan);
  }

  const out = {
    group: sc.group,
    kind: sc.kind,
    dataset: sc.dataset,
    scale: sc.scale,
    title: sc.title,
    bytes: ds.bytes,
    files: ds.files,
    entryCount: ds.entryCount,
    nodes: FANOUT_NODES,
    load1Before: +loadBefore.toFixed(2),
    load1After: +loadAfter.toFixed(2),
    goal: sc.goal,
    rows: rows.map(({ seq, firstRound, endRound, ...r }) => r),
  };
  out.goalResult = judge(out);
  results.scenarios.push(out);
  saveResults();
  return out;
}

// ---------------------------------------------------------------------------------------------
// report

function table(sc) {
  const me = sc.rows.find((r) => r.tool === 'smartcopy' && r.status === 'ok');
  // client and server CPU: over TCP and over SSH
  const tcp = sc.group === 'tcp' || sc.group === 'ssh';
  const lines = [
    `### ${sc.title}`,
    '',
    `${sc.files} files, ${fmtBytes(sc.bytes)}; ${RUNS} timed run${RUNS > 1 ? 's' : ''} per tool after ${WARMUP} warm-up${limitsNote(sc)}; ` +
      `load ${sc.load1Before} → ${sc.load1After}`,
    '',
    tcp
      ? '| tool | median s | min s | max s | MB/s | files/s | client cpu s | server cpu s | smartcopy ÷ tool | verify | goal |'
      : '| tool | median s | min s | max s | MB/s | files/s | cpu s | smartcopy ÷ tool | verify | goal |',
    tcp ? '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|' : '|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const r of sc.rows) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.label} | — | — | — | — | — | —${tcp ? ' | —' : ''} | — | ${r.status} | ${r.tool === 'smartcopy' ? goalCell(sc) : ''} |`);
      continue;
    }
    const ratio = r.tool === 'smartcopy' ? '—' : me ? `${(me.median / r.median).toFixed(2)}×` : '—';
    const mbps = sc.kind === 'resync' ? '—' : fmtRate(r.MBps);
    const cpu = tcp ? `${fmtCpu(r.cpuMedian)} | ${fmtCpu(r.serverCpuMedian)}` : fmtCpu(r.cpuMedian);
    lines.push(
      `| ${r.label} | ${fmtS(r.median)} | ${fmtS(r.min)} | ${fmtS(r.max)} | ${mbps} | ${Math.round(r.filesPerS)} | ${cpu} | ` +
        `${ratio} | ${r.verify.status} | ${r.tool === 'smartcopy' ? goalCell(sc) : ''} |`,
    );
  }
  const details = [];
  for (const r of sc.rows) {
    details.push(...problemLines(r));
    if (r.summary)
      details.push(`- smartcopy --json summary of one more ${sc.kind === 'resync' ? 'no-change ' : ''}run: \`${JSON.stringify(r.summary)}\``);
    if (r.summaryError) details.push(`- smartcopy --json: ${r.summaryError}`);
    if (r.wireError) details.push(`- ${r.label}: ${r.wireError}`);
  }
  if (sc.group === 'tcp') details.push(`- bytes on the wire (one more run each): ${wireLine(sc)}`);
  if (details.length) lines.push('', ...details);
  return lines.join('\n');
}

/** Error and verification lines under a table, for rows checked with verify(). */
function problemLines(r) {
  const lines = [];
  if (r.error) lines.push(`- ${r.label}: ${r.status}: ${r.error}`);
  const v = r.verify;
  if (v && v.status !== 'ok') {
    if (v.content.status === 'differ') lines.push(`- ${r.label}: content differs: ${v.content.sample.join('; ')}`);
    if (v.content.status === 'error') lines.push(`- ${r.label}: ${v.status === 'NO-OUTPUT' ? 'no destination' : 'diff failed'}: ${v.content.error}`);
    const sample = v.meta.sample.slice(0, 5).map((m) => `${m.path} ${m.what}${m.src !== undefined ? ` ${m.src}→${m.dst}` : ''}`);
    if (v.meta.count) lines.push(`- ${r.label}: ${v.meta.count} metadata mismatches, e.g. ${sample.join('; ')}`);
    if (v.meta.error) lines.push(`- ${r.label}: ${v.meta.error}`);
  }
  return lines;
}

function rateGoalCell(g) {
  if (!g) return '';
  const detail = [g.rate !== undefined ? `${fmtRate(g.rate)} MiB/s` : null, g.why].filter(Boolean).join(', ');
  return `${g.text}: **${g.verdict}**${detail ? ` (${detail})` : ''}`;
}

/** The QUIC group: every row is smartcopy; time ÷ the TCP row's, and MiB/s against the goals. */
function quicTable(sc) {
  const base = sc.rows.find((r) => r.tool === sc.goal.base && r.status === 'ok');
  const lines = [
    `### ${sc.title}`,
    '',
    `${sc.files} file${sc.files > 1 ? 's' : ''}, ${fmtBytes(sc.bytes)} (${(sc.bytes / 2 ** 20).toFixed(0)} MiB); ` +
      `${RUNS} timed run${RUNS > 1 ? 's' : ''} per row after ${WARMUP} warm-up; load ${sc.load1Before} → ${sc.load1After}`,
    '',
    '| tool | datagram | median s | min s | max s | MiB/s | client cpu s | server cpu s | time ÷ TCP | verify | goal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const r of sc.rows) {
    const payload = TOOLS[r.tool].quicPayload;
    const dgram = payload ? `${payload} B` : 'TCP';
    const goal = rateGoalCell(sc.rowGoals?.find((g) => g.tool === r.tool));
    if (r.status !== 'ok') {
      lines.push(`| ${r.label} | ${dgram} | — | — | — | — | — | — | — | ${r.status} | ${goal} |`);
      continue;
    }
    const ratio = r.tool === sc.goal.base ? '—' : base ? `${(r.median / base.median).toFixed(2)}×` : '—';
    lines.push(
      `| ${r.label} | ${dgram} | ${fmtS(r.median)} | ${fmtS(r.min)} | ${fmtS(r.max)} | ${fmtRate(r.MiBps)} | ` +
        `${fmtCpu(r.cpuMedian)} | ${fmtCpu(r.serverCpuMedian)} | ${ratio} | ${r.verify.status} | ${goal} |`,
    );
  }
  const details = sc.rows.flatMap(problemLines);
  if (details.length) lines.push('', ...details);
  return lines.join('\n');
}

/** The fan-out group: the fan-out row and the one-by-one row, each over all nodes. */
function fanoutTable(sc) {
  const me = sc.rows.find((r) => r.tool === sc.goal.me && r.status === 'ok');
  const lines = [
    `### ${sc.title}`,
    '',
    `${sc.files} files, ${fmtBytes(sc.bytes)} to each of ${sc.nodes} agents (${fmtBytes(sc.nodes * sc.bytes)} in all); ` +
      `${RUNS} timed run${RUNS > 1 ? 's' : ''} per row after ${WARMUP} warm-up; load ${sc.load1Before} → ${sc.load1After}`,
    '',
    '| tool | median s | min s | max s | MiB/s per node | MiB/s all nodes | client cpu s | agents cpu s | fan-out ÷ tool | verify | goal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const r of sc.rows) {
    const goal = r.tool === sc.goal.me ? goalCell(sc) : '';
    if (r.status !== 'ok') {
      lines.push(`| ${r.label} | — | — | — | — | — | — | — | — | ${r.status} | ${goal} |`);
      continue;
    }
    const ratio = r.tool === sc.goal.me ? '—' : me ? `${(me.median / r.median).toFixed(2)}×` : '—';
    lines.push(
      `| ${r.label} | ${fmtS(r.median)} | ${fmtS(r.min)} | ${fmtS(r.max)} | ${fmtRate(r.MiBps)} | ${fmtRate(r.allMiBps)} | ` +
        `${fmtCpu(r.cpuMedian)} | ${fmtCpu(r.serverCpuMedian)} | ${ratio} | ${r.verify.status} | ${goal} |`,
    );
  }
  const details = [];
  for (const r of sc.rows) {
    if (r.error) details.push(`- ${r.label}: ${r.status}: ${r.error}`);
    for (const n of r.verify?.nodes ?? []) {
      if (n.status === 'ok') continue;
      details.push(...problemLines({ label: `${r.label}, node ${n.node}`, verify: n }));
    }
    const s = r.summary;
    if (s) {
      const c = s.cache ?? {};
      const nodes = s.nodes ?? [];
      const secs = nodes.map((n) => n.seconds).filter((x) => typeof x === 'number');
      details.push(
        `- ${r.label}, one more run with --json: ${nodes.filter((n) => n.ok).length} of ${nodes.length} nodes ok; source ` +
          `${fmtBytes(c.bytesRead ?? 0)} read from disk for ${fmtBytes(c.bytesServed ?? 0)} sent ` +
          `(${c.bytesRead ? (c.bytesServed / c.bytesRead).toFixed(2) : '—'}×), ${c.reReads ?? '—'} blocks re-read, ` +
          `${c.evictions ?? '—'} evictions, peak cache ${fmtBytes(c.peakBytes ?? 0)}` +
          (secs.length ? `; nodes done in ${Math.min(...secs).toFixed(2)}–${Math.max(...secs).toFixed(2)} s` : ''),
      );
    }
    if (r.summaryError) details.push(`- ${r.label}: ${r.summaryError}`);
  }
  if (details.length) lines.push('', ...details);
  return lines.join('\n');
}

function deltaTable(sc) {
  const me = sc.rows.find((r) => r.tool === 'smartcopy' && r.status === 'ok');
  const n = (x) => (x == null ? '—' : x.toLocaleString('en-US'));
  const lines = [
    `### ${sc.title}`,
    '',
    `${sc.file}, ${fmtBytes(sc.bytes)}, onto a copy of base.bin (${fmtBytes(sc.baseBytes)}, same mode and mtime); ` +
      `${RUNS} timed run${RUNS > 1 ? 's' : ''} per tool after ${WARMUP} warm-up; load ${sc.load1Before} → ${sc.load1After}`,
    '',
    '| tool | median s | min s | max s | MB/s | client cpu s | server cpu s | smartcopy ÷ tool | bytes on wire | verify | goal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  const goals = [sc.goalResult, sc.wireGoalResult]
    .filter(Boolean)
    .map((g) => goalCell({ goalResult: g }))
    .join('; ');
  for (const r of sc.rows) {
    const goal = r.tool === 'smartcopy' ? goals : '';
    if (r.status !== 'ok') {
      lines.push(`| ${r.label} | — | — | — | — | — | — | — | — | ${r.status} | ${goal} |`);
      continue;
    }
    const ratio = r.tool === 'smartcopy' ? '—' : me ? `${(me.median / r.median).toFixed(2)}×` : '—';
    lines.push(
      `| ${r.label} | ${fmtS(r.median)} | ${fmtS(r.min)} | ${fmtS(r.max)} | ${fmtRate(r.MBps)} | ${fmtCpu(r.cpuMedian)} | ` +
        `${fmtCpu(r.serverCpuMedian)} | ${ratio} | ${n(r.wire?.total)} | ${r.verify.status} | ${goal} |`,
    );
  }
  const details = [];
  for (const r of sc.rows) {
    if (r.error) details.push(`- ${r.label}: ${r.status}: ${r.error}`);
    if (r.verify && r.verify.status !== 'ok') {
      const v = r.verify;
      if (v.content.status === 'differ') details.push(`- ${r.label}: content differs: ${v.content.sample.join('; ')}`);
      if (v.content.status === 'error') details.push(`- ${r.label}: ${v.status === 'NO-OUTPUT' ? 'no destination' : 'cmp failed'}: ${v.content.error}`);
      const sample = v.meta.sample.slice(0, 5).map((m) => `${m.path} ${m.what}${m.src !== undefined ? ` ${m.src}→${m.dst}` : ''}`);
      if (v.meta.count) details.push(`- ${r.label}: ${v.meta.count} metadata mismatches: ${sample.join('; ')}`);
    }
    if (r.summary) {
      const { bytesOnWire, bytesMatched, bytesLiteral, speedup } = r.summary;
      details.push(
        `- smartcopy --json summary of one more run: bytesOnWire ${n(bytesOnWire)}, bytesMatched ${n(bytesMatched)}, ` +
          `bytesLiteral ${n(bytesLiteral)}, speedup ${speedup == null ? '—' : typeof speedup === 'number' ? speedup.toFixed(2) : speedup}`,
      );
    }
    if (r.rsyncDelta) details.push(`- rsync --stats: matched data ${n(r.rsyncDelta.matched)}, literal data ${n(r.rsyncDelta.literal)}`);
    if (r.summaryError) details.push(`- smartcopy --json: ${r.summaryError}`);
    if (r.wireError) details.push(`- ${r.label}: ${r.wireError}`);
  }
  details.push(`- bytes on the wire (one more run each): ${wireLine(sc)}`);
  lines.push('', ...details);
  return lines.join('\n');
}

function wireOf(sc) {
  const me = sc.rows.find((r) => r.tool === 'smartcopy')?.wire ?? null;
  const peer = sc.rows.find((r) => r.tool === sc.goal.peer)?.wire ?? null;
  return { me, peer, ratio: me && peer && peer.total > 0 ? me.total / peer.total : null };
}

function wireLine(sc) {
  const { me, peer, ratio } = wireOf(sc);
  const parts = [
    `smartcopy ${me ? `${fmtBytes(me.total)} (bytesOnWire)` : '—'}`,
    `${TOOLS[sc.goal.peer].label} ${peer ? `${fmtBytes(peer.total)} (sent ${fmtBytes(peer.sent)} + received ${fmtBytes(peer.received)}, --stats)` : '—'}`,
  ];
  if (ratio !== null) parts.push(`smartcopy ÷ rsync ${ratio.toFixed(2)}×`);
  return parts.join('; ');
}

/** All TCP and delta scenarios' bytes on the wire side by side, exact byte counts. */
function wireTable(scs) {
  const lines = [
    '### Bytes on the wire (TCP, delta and SSH delta; one more run per tool after the timed ones)',
    '',
    'smartcopy: `bytesOnWire` of its `--json` summary (all streams, both directions); rsync (daemon, or `-e ssh` for ' +
      '`ssh-delta/`): `--stats` total bytes sent + received. Over SSH both count what goes through the SSH channels, ' +
      'not the SSH transport\'s own framing, padding and MACs.',
    '',
    '| scenario | data | smartcopy | rsync sent | rsync received | rsync total | smartcopy ÷ rsync |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  const n = (x) => (x == null ? '—' : x.toLocaleString('en-US'));
  for (const sc of scs) {
    const { me, peer, ratio } = wireOf(sc);
    // a delta push nominally sends the whole changed file; a no-change re-sync sends nothing
    const data = isDelta(sc) || sc.kind === 'full' ? sc.bytes : 0;
    const id = isDelta(sc) ? `${sc.group}/${sc.kind}` : `${sc.group}/${sc.kind}/${sc.dataset}`;
    lines.push(
      `| ${id} | ${n(data)} | ${n(me?.total)} | ${n(peer?.sent)} | ${n(peer?.received)} | ` +
        `${n(peer?.total)} | ${ratio === null ? '—' : `${ratio.toFixed(3)}×`} |`,
    );
  }
  return lines.join('\n');
}

function goalCell(sc) {
  const g = sc.goalResult;
  if (!g) return '—';
  const detail = [g.ratio !== undefined ? `${g.ratio.toFixed(2)}×` : null, g.why].filter(Boolean).join(', ');
  return `${g.text}: **${g.verdict}**${detail ? ` (${detail})` : ''}`;
}

const print = (s = '') => process.stdout.write(`${s}\n`);

print('## smartcopy benchmark');
print();
print(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB, ${machine.kernel}, node ${machine.node}`);
print(`- destination fs: ${machine.dstFs}: ${machine.dstNote}; source fs: ${machine.srcFs}, page cache warm`);
print(`- tools: smartcopy ${machine.smartcopy ?? 'missing'}${gitRev ? ` @ ${gitRev}` : ''}; ${machine.cp ?? 'cp ?'}; ${machine.rsync ?? 'rsync not installed'}`);
if (machine.agent) print(`- tcp: ${machine.agent}`);
if (machine.rsyncd) print(`- tcp: rsync daemon ${machine.rsyncd}`);
if (machine.sshd) print(`- ssh: ${machine.ssh ?? 'ssh ?'}; sshd ${machine.sshd}; every tool with -c ${machine.sshCipher}`);
for (const a of machine.quicAgents) print(`- quic: ${a}`);
if (machine.fanoutAgents.length)
  print(
    `- fanout: ${machine.fanoutAgents.length} TCP agents, roots ${DSTROOT}/fanout-nodes/node-N, ports ` +
      `${fanoutNodes.map((n) => n.port ?? '?').join(', ')}${fanoutNodes.some((n) => n.failed) ? `; ${machine.fanoutAgents.filter((a) => a.includes('failed')).join('; ')}` : ''}`,
  );
print(`- scale ${SCALE}, data ${DATA}${active.some((sc) => sc.group === 'fanout') && FANOUT_DATA !== DATA ? `; fan-out group at scale ${FANOUT_SCALE}, data ${FANOUT_DATA}` : ''}`);

const lastDelta = active.findLast((sc) => sc.group === 'delta');
for (const sc of active) {
  const out = isDelta(sc) ? await runDeltaScenario(sc) : sc.group === 'fanout' ? await runFanoutScenario(sc) : await runScenario(sc);
  print();
  print(isDelta(sc) ? deltaTable(out) : sc.group === 'quic' ? quicTable(out) : sc.group === 'fanout' ? fanoutTable(out) : table(out));
  if (sc === lastDelta) {
    const m = await runMatcher();
    if (m) {
      print();
      print('### Delta matcher, one core (test/bench/matcher.mjs)');
      print();
      print('```');
      print(m.stdout.trimEnd());
      print('```');
      if (m.code !== 0) {
        const why = `test/bench/matcher.mjs exited ${m.code ?? m.signal}: ${m.stderr.trim().slice(0, 300)}`;
        print();
        print(`- ${why}`);
        notes.push(why);
        process.exitCode = 1;
      }
    }
  }
}
machine.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));
saveResults();
stopServers();

const wireDone = results.scenarios.filter((sc) => overTcp(sc) || sc.group === 'ssh-delta');
if (wireDone.length) {
  print();
  print(wireTable(wireDone));
}

print();
// the delta scenarios have two goals each: time and bytes on the wire
const judged = results.scenarios
  .flatMap((s) => [s.goalResult, s.wireGoalResult, ...(s.rowGoals ?? [])])
  .filter((g) => g && g.verdict !== 'n/a');
const met = judged.filter((g) => g.verdict === 'MET').length;
if (judged.length)
  print(
    `Goals: ${met}/${judged.length} MET. Ratios are smartcopy's median over the other tool's (bytes: smartcopy's over rsync's; ` +
      'fan-out: the fan-out run\'s over the one-by-one pushes\'); < 1.0 means smartcopy is faster (sends less). QUIC goals are ' +
      'MiB/s of data of the median run.',
  );
else print('Goals: none judged (smartcopy or its peer was not selected or not available).');
for (const n of notes) print(`Note: ${n}`);
print(`Raw results: ${resultsFile}`);

const bad = results.scenarios.flatMap((s) => s.rows).filter((r) => r.status === 'FAILED' || (r.verify && r.verify.status !== 'ok'));
if (bad.length) {
  log(`${bad.length} row(s) failed or did not verify: ${bad.map((r) => r.id).join(', ')}`);
  process.exitCode = 1;
}
