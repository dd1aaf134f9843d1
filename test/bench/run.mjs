#!/usr/bin/env node
// smartcopy local benchmark: smartcopy vs cp -a vs rsync -a in one run, same machine, same
// datasets. Usage and how to read the output: test/bench/README.md (or --help).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const SCBENCH = '/tmp/scbench';
const DSTROOT = path.join(SCBENCH, 'dst');
const LOGDIR = path.join(SCBENCH, 'logs');

const USAGE = `Usage: npm run bench -- [options]        (or: node test/bench/run.mjs [options])

  --scale S        dataset scale (default 1: mixed 1.7 GB / 1,111 files, small 20,000 x 4 KiB)
  --runs N         timed runs per tool (default 5)
  --warmup N       untimed warm-up runs per tool before those (default 1)
  --only REGEX     run only rows whose id "scenario/dataset/tool" matches, e.g. 'small',
                   'full/mixed', 'smartcopy|rsync' (tools: smartcopy, cp-a, rsync)
  --data DIR       dataset directory (default ${SCBENCH}/data)
  --no-tmpfs       keep destinations on the disk under ${DSTROOT} (default: a tmpfs
                   mounted there for the run when running as root)
  --smartcopy CMD  command used for smartcopy, split on spaces (default: the workspace's
                   node_modules/.bin/smartcopy); SRC DST [flags] are appended
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
      data: { type: 'string', default: path.join(SCBENCH, 'data') },
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
const DATA = path.resolve(args.data);

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

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmtS = (x) => (x == null ? '—' : x >= 0.1 ? x.toFixed(3) : x.toFixed(4));
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

/**
 * One timed execution. stdout is ignored and stderr goes straight to a file (no pipe, no
 * shell, nothing for this process to read while the clock runs), so a failing tool still
 * leaves its message behind.
 */
function runTimed(argv, stderrFile) {
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
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', errFd] });
    currentChild = child;
    child.on('error', (err) => done({ ok: false, error: err.message }));
    child.on('exit', (code, signal) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      done({ ok: code === 0, code, signal, seconds });
    });
  });
}

/** Run a command to completion, keeping at most `limit` bytes of each output stream. */
function capture(argv, limit = 1 << 16) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    currentChild = child;
    const out = { stdout: '', stderr: '', stdoutLines: 0 };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s) => {
      for (const ch of s) if (ch === '\n') out.stdoutLines++;
      if (out.stdout.length < limit) out.stdout += s.slice(0, limit - out.stdout.length);
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

const TOOLS = {
  smartcopy: {
    label: 'smartcopy',
    available: smartcopy.available,
    reason: smartcopy.reason,
    full: (s, d) => [...smartcopy.argv, s, d],
    resync: (s, d) => [...smartcopy.argv, s, d, '--incremental'],
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
};

const SCENARIOS = [
  {
    kind: 'full',
    dataset: 'mixed',
    title: 'Full copy: mixed (destination wiped before every run)',
    tools: ['smartcopy', 'cp-a', 'rsync'],
    goal: { peer: 'cp-a', max: 1.0 },
  },
  {
    kind: 'full',
    dataset: 'small',
    title: 'Full copy: small (destination wiped before every run)',
    tools: ['smartcopy', 'cp-a', 'rsync'],
    goal: { peer: 'cp-a', max: 1.0 },
  },
  {
    kind: 'resync',
    dataset: 'small',
    title: 'No-change re-sync: small (destination already up to date)',
    tools: ['smartcopy', 'rsync'],
    goal: { peer: 'rsync', max: 1.0 },
  },
];

const rowId = (sc, tool) => `${sc.kind}/${sc.dataset}/${tool}`;
for (const sc of SCENARIOS) sc.selected = sc.tools.filter((t) => ONLY.test(rowId(sc, t)));
const active = SCENARIOS.filter((sc) => sc.selected.length > 0);
if (active.length === 0) usageError(`--only '${args.only}' matches no row (ids look like full/mixed/smartcopy)`);

const missing = new Set();
for (const sc of active) for (const t of sc.selected) if (!TOOLS[t].available) missing.add(t);
for (const t of missing) {
  log(`${TOOLS[t].reason}; skipping its rows`);
  notes.push(`${TOOLS[t].label}: ${TOOLS[t].reason}; its rows were skipped.`);
}

// ---------------------------------------------------------------------------------------------
// datasets, destination filesystem, machine

const datasets = [...new Set(active.map((sc) => sc.dataset))];
log(`== datasets ${datasets.join(', ')} at scale ${SCALE} in ${DATA}`);
const mk = spawnSync(path.join(HERE, 'make-dataset.sh'), [DATA, SCALE], {
  stdio: ['ignore', 'inherit', 'inherit'],
  env: { ...process.env, DATASETS: datasets.join(' ') },
});
if (mk.status !== 0) {
  log(`make-dataset.sh failed (${mk.error?.message ?? `exit ${mk.status}`})`);
  process.exit(1);
}
const dsInfo = {};
for (const ds of datasets) {
  const root = path.join(DATA, ds);
  const entries = await walk(root);
  dsInfo[ds] = { root, entries, ...treeStats(entries), footprint: tmpfsFootprint(entries) };
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
  const need = Math.max(...active.map((sc) => sc.selected.length * dsInfo[sc.dataset].footprint));
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

const results = { machine, args: { scale: SCALE, runs: RUNS, warmup: WARMUP, only: args.only, data: DATA }, scenarios: [], notes };
const stamp = machine.date.replace(/[:.]/g, '-');
const resultsFile = path.join(SCBENCH, `results-${stamp}.json`);
const saveResults = () => fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2));

function wipe(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  // flush the previous run's dirty pages (and the rm) now, not during the next timed run
  spawnSync('sync');
}

async function runScenario(sc) {
  const ds = dsInfo[sc.dataset];
  const tag = `${sc.kind}/${sc.dataset}`;
  const rows = sc.selected.map((tool) => {
    const dst = path.join(DSTROOT, `${sc.kind}-${tool}`, sc.dataset);
    const argv = TOOLS[tool].available ? TOOLS[tool][sc.kind](ds.root, dst) : null;
    return {
      id: rowId(sc, tool),
      tool,
      label: TOOLS[tool].label,
      argv,
      dst,
      status: TOOLS[tool].available ? 'ok' : 'skipped',
      error: TOOLS[tool].available ? undefined : TOOLS[tool].reason,
      times: [],
      warmupTimes: [],
    };
  });
  const live = () => rows.filter((r) => r.status === 'ok');
  for (const r of live()) scratchDirs.add(path.dirname(r.dst));

  log(`== ${tag}: ${ds.files} files, ${fmtBytes(ds.bytes)}; warming the page cache`);
  await warmCache(ds.root, ds.entries);
  const loadBefore = os.loadavg()[0];

  if (sc.kind === 'resync') {
    // bring each destination up to date with the tool itself (untimed), as a user would
    for (const r of live()) {
      wipe(r.dst);
      const res = await runTimed(r.argv, path.join(LOGDIR, `${r.id.replaceAll('/', '.')}.setup.stderr`));
      if (!res.ok) {
        r.status = 'FAILED';
        r.error = `setup run: ${res.error ?? `exit ${res.code ?? res.signal}`} ${tailOf(path.join(LOGDIR, `${r.id.replaceAll('/', '.')}.setup.stderr`))}`.trim();
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
      if (r.status !== 'ok') continue;
      if (sc.kind === 'full') wipe(r.dst);
      const errFile = path.join(LOGDIR, `${r.id.replaceAll('/', '.')}.stderr`);
      const res = await runTimed(r.argv, errFile);
      if (!res.ok) {
        r.status = 'FAILED';
        r.error = `${res.error ?? `exit ${res.code ?? res.signal}`}: ${tailOf(errFile)}`.trim();
        log(`   ${r.label}: FAILED (${r.error})`);
        continue;
      }
      (round < WARMUP ? r.warmupTimes : r.times).push(res.seconds);
    }
    log(`   round ${round + 1}/${total}${round < WARMUP ? ' (warm-up)' : ''} done`);
  }
  const loadAfter = os.loadavg()[0];

  for (const r of rows) {
    if (r.status !== 'ok') continue;
    r.median = median(r.times);
    r.min = Math.min(...r.times);
    r.max = Math.max(...r.times);
    r.MBps = ds.bytes / r.median / 1e6;
    r.filesPerS = ds.files / r.median;
    log(`   verifying ${r.label}`);
    r.verify = await verify(ds.root, r.dst, ds.entries);
  }
  // smartcopy's own account of a no-change run (did it really skip everything?)
  const scRow = rows.find((r) => r.tool === 'smartcopy' && r.status === 'ok');
  if (sc.kind === 'resync' && scRow) {
    const c = await capture([...scRow.argv, '--json']);
    const lines = c.stdout.trim().split('\n').reverse();
    for (const line of lines) {
      try {
        const ev = JSON.parse(line);
        if (ev && ev.event === 'summary') {
          scRow.summary = ev;
          break;
        }
      } catch {
        // not an NDJSON line (e.g. a placeholder command); keep looking
      }
    }
    if (!scRow.summary) scRow.summaryError = `no summary event from --json (exit ${c.code}) ${c.stderr.trim().slice(0, 200)}`;
  }
  for (const r of rows) fs.rmSync(path.dirname(r.dst), { recursive: true, force: true });

  const out = {
    kind: sc.kind,
    dataset: sc.dataset,
    title: sc.title,
    bytes: ds.bytes,
    files: ds.files,
    entryCount: ds.entryCount,
    load1Before: +loadBefore.toFixed(2),
    load1After: +loadAfter.toFixed(2),
    goal: sc.goal,
    rows: rows.map(({ dst, ...r }) => r),
  };
  out.goalResult = judge(out);
  results.scenarios.push(out);
  saveResults();
  return out;
}

function judge(sc) {
  const me = sc.rows.find((r) => r.tool === 'smartcopy');
  const peer = sc.rows.find((r) => r.tool === sc.goal.peer);
  const text = `≤ ${sc.goal.max.toFixed(1)}× ${TOOLS[sc.goal.peer].label}`;
  if (!me || !peer) return { text, verdict: 'n/a', why: 'not selected' };
  if (me.status === 'skipped') return { text, verdict: 'n/a', why: 'smartcopy not available' };
  if (me.status !== 'ok') return { text, verdict: 'MISSED', why: 'smartcopy failed' };
  if (peer.status !== 'ok') return { text, verdict: 'n/a', why: `no ${peer.label} result` };
  const ratio = me.median / peer.median;
  if (me.verify.status !== 'ok') return { text, verdict: 'MISSED', ratio, why: `verify ${me.verify.status}` };
  return { text, verdict: ratio <= sc.goal.max ? 'MET' : 'MISSED', ratio };
}

// ---------------------------------------------------------------------------------------------
// report

function table(sc) {
  const me = sc.rows.find((r) => r.tool === 'smartcopy' && r.status === 'ok');
  const lines = [
    `### ${sc.title}`,
    '',
    `${sc.files} files, ${fmtBytes(sc.bytes)}; ${RUNS} timed run${RUNS > 1 ? 's' : ''} per tool after ${WARMUP} warm-up; ` +
      `load ${sc.load1Before} → ${sc.load1After}`,
    '',
    '| tool | median s | min s | max s | MB/s | files/s | smartcopy ÷ tool | verify | goal |',
    '|---|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const r of sc.rows) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.label} | — | — | — | — | — | — | ${r.status} | ${r.tool === 'smartcopy' ? goalCell(sc) : ''} |`);
      continue;
    }
    const ratio = r.tool === 'smartcopy' ? '—' : me ? `${(me.median / r.median).toFixed(2)}×` : '—';
    const mbps = sc.kind === 'resync' ? '—' : fmtRate(r.MBps);
    lines.push(
      `| ${r.label} | ${fmtS(r.median)} | ${fmtS(r.min)} | ${fmtS(r.max)} | ${mbps} | ${Math.round(r.filesPerS)} | ` +
        `${ratio} | ${r.verify.status} | ${r.tool === 'smartcopy' ? goalCell(sc) : ''} |`,
    );
  }
  const details = [];
  for (const r of sc.rows) {
    if (r.error) details.push(`- ${r.label}: ${r.status}: ${r.error}`);
    if (r.verify && r.verify.status !== 'ok') {
      const v = r.verify;
      if (v.content.status === 'differ') details.push(`- ${r.label}: content differs: ${v.content.sample.join('; ')}`);
      if (v.content.status === 'error') details.push(`- ${r.label}: ${v.status === 'NO-OUTPUT' ? 'no destination' : 'diff failed'}: ${v.content.error}`);
      const sample = v.meta.sample.slice(0, 5).map((m) => `${m.path} ${m.what}${m.src !== undefined ? ` ${m.src}→${m.dst}` : ''}`);
      if (v.meta.count) details.push(`- ${r.label}: ${v.meta.count} metadata mismatches, e.g. ${sample.join('; ')}`);
      if (v.meta.error) details.push(`- ${r.label}: ${v.meta.error}`);
    }
    if (r.summary) details.push(`- smartcopy --json summary of one more no-change run: \`${JSON.stringify(r.summary)}\``);
    if (r.summaryError) details.push(`- smartcopy --json: ${r.summaryError}`);
  }
  if (details.length) lines.push('', ...details);
  return lines.join('\n');
}

function goalCell(sc) {
  const g = sc.goalResult;
  const detail = [g.ratio !== undefined ? `${g.ratio.toFixed(2)}×` : null, g.why].filter(Boolean).join(', ');
  return `${g.text}: **${g.verdict}**${detail ? ` (${detail})` : ''}`;
}

const print = (s = '') => process.stdout.write(`${s}\n`);

print('## smartcopy local benchmark');
print();
print(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB, ${machine.kernel}, node ${machine.node}`);
print(`- destination fs: ${machine.dstFs}: ${machine.dstNote}; source fs: ${machine.srcFs}, page cache warm`);
print(`- tools: smartcopy ${machine.smartcopy ?? 'missing'}${gitRev ? ` @ ${gitRev}` : ''}; ${machine.cp ?? 'cp ?'}; ${machine.rsync ?? 'rsync not installed'}`);
print(`- scale ${SCALE}, data ${DATA}`);

for (const sc of active) {
  const out = await runScenario(sc);
  print();
  print(table(out));
}
machine.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));
saveResults();

print();
const judged = results.scenarios.filter((s) => s.goalResult.verdict !== 'n/a');
const met = judged.filter((s) => s.goalResult.verdict === 'MET').length;
if (judged.length) print(`Goals: ${met}/${judged.length} MET. Ratios are smartcopy's median over the other tool's; < 1.0 means smartcopy is faster.`);
else print('Goals: none judged (smartcopy or its peer was not selected or not available).');
for (const n of notes) print(`Note: ${n}`);
print(`Raw results: ${resultsFile}`);

const bad = results.scenarios.flatMap((s) => s.rows).filter((r) => r.status === 'FAILED' || (r.verify && r.verify.status !== 'ok'));
if (bad.length) {
  log(`${bad.length} row(s) failed or did not verify: ${bad.map((r) => r.id).join(', ')}`);
  process.exitCode = 1;
}
