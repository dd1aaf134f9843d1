import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConnectionClosedError, SmartcopyError } from '@smartcopy/protocol';
import {
  fingerprint,
  hashHostName,
  HostKeyError,
  isRemoteCommandNotFound,
  parseProxyJump,
  parseSshAddress,
  RemoteCommandError,
  RemoteCommandNotFoundError,
  resolveSshHost,
  sshConnect,
  SshConnection,
  sshTransport,
} from '../src/ssh/index.js';
import type { SshOptions, Stream } from '../src/index.js';
import { hostFieldMatches, readKnownHosts } from '../src/ssh/known-hosts.js';
import { runTransportCompliance, sink, until } from './compliance.js';
import { relayHarness } from './helpers/relay.js';
import { startSshAgent, startSshd } from './helpers/sshd.js';
import type { Sshd } from './helpers/sshd.js';

const run = promisify(execFile);
const user = os.userInfo().username;

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `smartcopy-ssh-test-${prefix}-`));
}

function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
}

async function newKey(dir: string, name: string): Promise<string> {
  const file = path.join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return file;
}

function blobOf(pubLine: string): Buffer {
  return Buffer.from(pubLine.split(/\s+/)[1]!, 'base64');
}

/** Everything a stream delivers until its end, or the error it fails with. */
async function readAll(s: Stream): Promise<{ text: string; error?: Error }> {
  const got = sink(s, { keep: true });
  try {
    return { text: (await got.result).data!.toString() };
  } catch (error) {
    return { text: '', error: error as Error };
  }
}

async function rejectsWith(p: Promise<unknown>): Promise<SmartcopyError> {
  try {
    const v = await p;
    if (v instanceof SshConnection) v.abort();
  } catch (err) {
    assert.ok(err instanceof SmartcopyError, `expected a SmartcopyError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

// One sshd for the whole file, started by whichever test needs it first.
let sshdPromise: Promise<Sshd> | undefined;
const getSshd = (): Promise<Sshd> => (sshdPromise ??= startSshd());
after(async () => {
  if (sshdPromise) await (await sshdPromise).stop();
});

/** Options that reach the test sshd without touching the real ~/.ssh or any ssh-agent. */
function fixtureOpts(sshd: Sshd, extra: Partial<SshOptions> = {}): SshOptions {
  return { configFile: sshd.sshConfig, homeDir: sshd.dir, agentSocket: '', askPassphrase: false, ...extra };
}

runTransportCompliance(
  'ssh: exec channels on one connection to a real sshd',
  relayHarness(async () => {
    const sshd = await getSshd();
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd));
    return {
      start: (argv) => conn.exec(shellQuote(argv)),
      async teardown() {
        conn.abort();
        await conn.closed;
      },
    };
  }),
  { bigWriteBytes: 16 * 1024 * 1024 },
);

describe('ssh config resolution', () => {
  let dir: string;
  before(() => {
    dir = tempDir('config');
    fs.mkdirSync(path.join(dir, '.ssh', 'conf.d'), { recursive: true });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };

  it('an alias takes HostName, Port, User, IdentityFile (tokens, ~) from its Host block; first value wins', () => {
    const cfg = write(
      'config1',
      [
        'Host backup',
        '  HostName %h.example.org',
        '  Port 2200',
        '  User keeper',
        '  IdentityFile ~/.ssh/id_%r_%h_%p',
        '  IdentityFile /keys/%u-%n',
        '  IdentitiesOnly yes',
        '  UserKnownHostsFile ~/.ssh/kh_%h',
        '  StrictHostKeyChecking accept-new',
        '  ConnectTimeout 7',
        '  Ciphers aes256-gcm@openssh.com,aes128-ctr',
        'Host *',
        '  User nobody',
        '  Port 22',
        '  BatchMode yes',
        '  GlobalKnownHostsFile none',
        '',
      ].join('\n'),
    );
    const h = resolveSshHost('backup', { configFile: cfg, homeDir: dir, localUser: 'me' });
    assert.equal(h.hostName, 'backup.example.org');
    assert.equal(h.port, 2200);
    assert.equal(h.user, 'keeper');
    assert.deepEqual(h.identityFiles, [path.join(dir, '.ssh/id_keeper_backup.example.org_2200'), '/keys/me-backup']);
    assert.equal(h.defaultIdentityFiles, false);
    assert.equal(h.identitiesOnly, true);
    assert.deepEqual(h.userKnownHostsFiles, [path.join(dir, '.ssh/kh_backup.example.org')]);
    assert.deepEqual(h.globalKnownHostsFiles, []);
    assert.equal(h.strictHostKeyChecking, 'accept-new');
    assert.equal(h.connectTimeoutMs, 7000);
    assert.deepEqual(h.ciphers, ['aes256-gcm@openssh.com', 'aes128-ctr']);
    assert.equal(h.batchMode, true);
    assert.deepEqual(h.configFiles, [cfg]);
  });

  it('explicit user, port and -i override the config; -i is tried first', () => {
    const cfg = write('config2', 'Host box\n  HostName 10.1.2.3\n  User cfguser\n  Port 2222\n  IdentityFile ~/cfgkey\n');
    const h = resolveSshHost('box', { configFile: cfg, homeDir: dir, user: 'cli', port: 2022, identityFiles: ['/tmp/cli-key'] });
    assert.equal(h.hostName, '10.1.2.3');
    assert.equal(h.user, 'cli');
    assert.equal(h.port, 2022);
    assert.deepEqual(h.identityFiles, ['/tmp/cli-key', path.join(dir, 'cfgkey')]);
  });

  it('without a config: the alias is the host, port 22, the local user, the default keys and known_hosts', () => {
    const h = resolveSshHost('plain.example', { configFile: 'none', homeDir: dir, localUser: 'me' });
    assert.equal(h.hostName, 'plain.example');
    assert.equal(h.port, 22);
    assert.equal(h.user, 'me');
    assert.equal(h.defaultIdentityFiles, true);
    assert.deepEqual(h.identityFiles, ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((k) => path.join(dir, '.ssh', k)));
    assert.deepEqual(h.userKnownHostsFiles, [path.join(dir, '.ssh/known_hosts'), path.join(dir, '.ssh/known_hosts2')]);
    assert.equal(h.strictHostKeyChecking, 'ask');
    assert.deepEqual(h.proxyJump, []);
  });

  it('~/.ssh/config is read from homeDir, with Include (relative to ~/.ssh, wildcards)', () => {
    write('.ssh/conf.d/10-web.conf', 'Host web\n  HostName web.internal\n');
    write('.ssh/conf.d/20-db.conf', 'Host db\n  HostName db.internal\n  ProxyJump admin@bastion:2022,ssh://jump2\n');
    write('.ssh/config', 'Include conf.d/*.conf\nHost *\n  User team\n');
    const opts = { homeDir: dir, systemConfigFile: null };
    assert.equal(resolveSshHost('web', opts).hostName, 'web.internal');
    const db = resolveSshHost('db', opts);
    assert.equal(db.hostName, 'db.internal');
    assert.equal(db.user, 'team');
    assert.deepEqual(db.proxyJump, [{ host: 'bastion', user: 'admin', port: 2022 }, { host: 'jump2' }]);
    assert.deepEqual(resolveSshHost('db', { ...opts, proxyJump: 'none' }).proxyJump, []);
    assert.deepEqual(resolveSshHost('db', { ...opts, proxyJump: 'other' }).proxyJump, [{ host: 'other' }]);
  });

  it('Ciphers accepts +, - and ^ modifiers over our preference; bad values are usage errors', () => {
    const ciphers = (spec: string): readonly string[] | undefined =>
      resolveSshHost('h', { configFile: write('config-c', `Ciphers ${spec}\n`), homeDir: dir }).ciphers;
    assert.deepEqual(ciphers('-aes*-ctr'), ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com']);
    assert.equal(ciphers('^aes256-ctr')![0], 'aes256-ctr');
    assert.equal(ciphers('+aes128-cbc')!.at(-1), 'aes128-cbc');
    assert.throws(() => ciphers('rot13'), { code: 'SC_ERR_USAGE' });
    assert.throws(() => resolveSshHost('h', { configFile: write('config-p', 'Port http\n'), homeDir: dir }), { code: 'SC_ERR_USAGE' });
    assert.throws(() => resolveSshHost('h', { configFile: path.join(dir, 'missing'), homeDir: dir }), /cannot read SSH config/);
  });

  it('parses addresses and ProxyJump specs', () => {
    assert.deepEqual(parseSshAddress('alice@host.example:2222'), { host: 'host.example', user: 'alice', port: 2222 });
    assert.deepEqual(parseSshAddress('ssh://[::1]:22'), { host: '::1', port: 22 });
    assert.deepEqual(parseSshAddress('alias'), { host: 'alias' });
    assert.throws(() => parseSshAddress('h:99999'), { code: 'SC_ERR_USAGE' });
    assert.deepEqual(parseProxyJump('a@b:1,[::1]:2'), [{ host: 'b', user: 'a', port: 1 }, { host: '::1', port: 2 }]);
  });
});

describe('known_hosts matching', () => {
  it('plain names, [host]:port, comma lists, wildcards and negations', () => {
    assert.ok(hostFieldMatches('example.org', 'example.org'));
    assert.ok(hostFieldMatches('Example.ORG', 'example.org'));
    assert.ok(hostFieldMatches('a,[127.0.0.1]:2222,b', '[127.0.0.1]:2222'));
    assert.ok(!hostFieldMatches('127.0.0.1', '[127.0.0.1]:2222'));
    assert.ok(hostFieldMatches('*.example.org', 'www.example.org'));
    assert.ok(!hostFieldMatches('*.example.org,!www.example.org', 'www.example.org'));
    assert.ok(hostFieldMatches('host?', 'host1'));
  });

  it('our hashed entries are the ones OpenSSH writes and finds (ssh-keygen -H / -F)', async () => {
    const dir = tempDir('kh');
    try {
      const file = path.join(dir, 'known_hosts');
      const key = 'AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
      fs.writeFileSync(file, `${hashHostName('[10.0.0.7]:2222')} ssh-ed25519 ${key}\n`);
      const { stdout } = await run('ssh-keygen', ['-F', '[10.0.0.7]:2222', '-f', file]);
      assert.match(stdout, /ssh-ed25519/);
      fs.writeFileSync(file, `plain.example ssh-ed25519 ${key}\n`);
      await run('ssh-keygen', ['-H', '-f', file]);
      const [entry] = readKnownHosts(file);
      assert.ok(entry!.patterns.startsWith('|1|'));
      assert.ok(hostFieldMatches(entry!.patterns, 'plain.example'));
      assert.ok(!hostFieldMatches(entry!.patterns, 'other.example'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ssh against a real OpenSSH sshd', () => {
  let sshd: Sshd;
  let dir: string;
  before(async () => {
    sshd = await getSshd();
    dir = tempDir('work');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** a fresh home dir with ~/.ssh/known_hosts holding `knownHosts` (if given) */
  const home = (knownHosts?: string): string => {
    const h = fs.mkdtempSync(path.join(dir, 'home-'));
    fs.mkdirSync(path.join(h, '.ssh'), { mode: 0o700 });
    if (knownHosts !== undefined) fs.writeFileSync(path.join(h, '.ssh', 'known_hosts'), knownHosts);
    return h;
  };
  const target = () => ({ host: '127.0.0.1', port: sshd.port, user: sshd.user });
  /** no config file: everything explicit, known hosts and keys from `homeDir` */
  const direct = (homeDir: string, extra: Partial<SshOptions> = {}): SshOptions => ({
    configFile: 'none',
    homeDir,
    agentSocket: '',
    askPassphrase: false,
    identityFiles: [sshd.clientKey],
    ...extra,
  });
  const knownLine = (): string => fs.readFileSync(sshd.knownHosts, 'utf8');

  it('connects through a config alias (HostName, Port, User, IdentityFile) and runs a command', async () => {
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd));
    try {
      assert.deepEqual({ ...conn.features }, { sameHost: false, multiplexed: true, encrypted: true });
      assert.equal(conn.remoteAddress, `${user}@127.0.0.1:${sshd.port}`);
      assert.equal(conn.algorithms.cipher, 'aes128-gcm@openssh.com', 'aes128-gcm is asked for first');
      const lines: string[] = [];
      const s = await conn.exec('echo out; printf "one\\ntwo" >&2; echo "$USER"', { onStderr: (l) => lines.push(l) });
      assert.deepEqual(await readAll(s), { text: `out\n${user}\n` });
      assert.deepEqual(lines, ['one', 'two']);
      assert.deepEqual(await s.exit, { code: 0, signal: undefined, stderr: 'one\ntwo' });
    } finally {
      await conn.close();
    }
    assert.equal(conn.state, 'closed');
    await assert.rejects(conn.exec('true'), ConnectionClosedError);
  });

  it('--ssh-cipher forces the cipher', async () => {
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd, { cipher: 'chacha20-poly1305@openssh.com' }));
    assert.equal(conn.algorithms.cipher, 'chacha20-poly1305@openssh.com');
    await conn.close();
  });

  it('an unknown host key is refused with its fingerprint and nothing is written', async () => {
    const h = home('');
    const err = await rejectsWith(sshConnect(target(), direct(h)));
    assert.ok(err instanceof HostKeyError);
    assert.equal(err.problem, 'unknown');
    assert.equal(err.code, 'SC_ERR_AUTH');
    const fp = fingerprint(blobOf(sshd.hostKeyPub));
    assert.equal(
      err.message,
      `Host key verification failed: [127.0.0.1]:${sshd.port} is not a known host; its ED25519 key fingerprint is ${fp}. ` +
        'Check that fingerprint with the host\'s administrator, then connect once with --accept-new-host-key (or add the key to ~/.ssh/known_hosts)',
    );
    assert.equal(fs.readFileSync(path.join(h, '.ssh/known_hosts'), 'utf8'), '');
  });

  it('--accept-new-host-key records the key (OpenSSH can read it) and the next connect verifies it', async () => {
    const h = home();
    const warnings: string[] = [];
    const first = await sshConnect(target(), direct(h, { acceptNewHostKey: true, onWarning: (l) => warnings.push(l) }));
    await first.close();
    assert.deepEqual(warnings, [`Warning: Permanently added '[127.0.0.1]:${sshd.port}' (ED25519) to the list of known hosts.`]);
    const file = path.join(h, '.ssh/known_hosts');
    const [keyType, b64] = sshd.hostKeyPub.split(/\s+/);
    assert.equal(fs.readFileSync(file, 'utf8'), `[127.0.0.1]:${sshd.port} ${keyType} ${b64}\n`);
    assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
    await run('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', file]);
    const second = await sshConnect(target(), direct(h, { onWarning: (l) => warnings.push(l) }));
    await second.close();
    assert.equal(warnings.length, 1);
  });

  it('StrictHostKeyChecking accept-new and no (from the config) accept an unknown host', async () => {
    for (const mode of ['accept-new', 'no']) {
      const h = home();
      const cfg = path.join(h, 'cfg');
      fs.writeFileSync(cfg, `Host t\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  IdentityFile ${sshd.clientKey}\n  StrictHostKeyChecking ${mode}\n`);
      const conn = await sshConnect({ host: 't' }, { configFile: cfg, homeDir: h, agentSocket: '' });
      await conn.close();
      assert.match(fs.readFileSync(path.join(h, '.ssh/known_hosts'), 'utf8'), /^\[127\.0\.0\.1\]:\d+ ssh-ed25519 /, mode);
    }
  });

  it('a changed host key is always refused with the REMOTE HOST IDENTIFICATION HAS CHANGED warning', async () => {
    // the recorded "host key" is some other ed25519 key
    const other = fs.readFileSync(`${sshd.clientKey}.pub`, 'utf8').split(/\s+/).slice(0, 2).join(' ');
    const h = home(`# comment\nother.example ${other}\n[127.0.0.1]:${sshd.port} ${other}\n`);
    const fp = fingerprint(blobOf(sshd.hostKeyPub));
    for (const extra of [{}, { acceptNewHostKey: true }]) {
      const err = await rejectsWith(sshConnect(target(), direct(h, extra)));
      assert.ok(err instanceof HostKeyError);
      assert.equal(err.problem, 'changed');
      assert.match(err.message, /^WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for \[127\.0\.0\.1\]:\d+: /);
      assert.ok(err.message.includes(`~/.ssh/known_hosts:3 records a different one`), err.message);
      assert.ok(err.message.includes(fp), err.message);
      assert.ok(!err.message.includes('\n'), 'one line');
      assert.deepEqual(err.offending, { file: path.join(h, '.ssh/known_hosts'), line: 3 });
      assert.match(err.banner!, /@ {4}WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! {5}@/);
    }
    // StrictHostKeyChecking=no does not let a changed key through either
    const cfg = path.join(h, 'cfg');
    fs.writeFileSync(cfg, `Host t\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  IdentityFile ${sshd.clientKey}\n  StrictHostKeyChecking no\n`);
    const err = await rejectsWith(sshConnect({ host: 't' }, { configFile: cfg, homeDir: h, agentSocket: '' }));
    assert.equal((err as HostKeyError).problem, 'changed');
  });

  it('a hashed known_hosts entry (ssh-keygen -H) is accepted; a @revoked key is refused', async () => {
    const h = home(knownLine());
    const file = path.join(h, '.ssh/known_hosts');
    await run('ssh-keygen', ['-H', '-f', file]);
    assert.match(fs.readFileSync(file, 'utf8'), /^\|1\|/);
    const conn = await sshConnect(target(), direct(h));
    await conn.close();

    fs.appendFileSync(file, `@revoked * ${sshd.hostKeyPub}\n`);
    const err = await rejectsWith(sshConnect(target(), direct(h)));
    assert.equal((err as HostKeyError).problem, 'revoked');
    assert.match(err.message, /is marked @revoked in ~\/\.ssh\/known_hosts:2/);
  });

  it('a wrong client key is refused with one clear line naming what was tried', async () => {
    const wrong = await newKey(dir, 'id_wrong');
    const h = home(knownLine());
    const err = await rejectsWith(sshConnect(target(), direct(h, { identityFiles: [wrong, path.join(dir, 'no-such-key')] })));
    assert.equal(err.code, 'SC_ERR_AUTH');
    assert.equal(err.message, `${user}@127.0.0.1: permission denied (publickey); tried: ${wrong}, ${path.join(dir, 'no-such-key')} (not found)`);
    // nothing to offer at all: say so, and what to do
    const none = await rejectsWith(sshConnect(target(), direct(h, { identityFiles: [] })));
    assert.equal(
      none.message,
      `${user}@127.0.0.1: permission denied (publickey); no key to offer: no ssh-agent (SSH_AUTH_SOCK is not set) and none of ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa exists; create one with ssh-keygen, or pass -i KEY`,
    );
  });

  it('ssh-agent: its keys come first; IdentitiesOnly limits them to the identity files', async () => {
    const agent = await startSshAgent();
    try {
      const wrong = await newKey(dir, 'id_agent_wrong');
      await agent.add(wrong);
      await agent.add(sshd.encryptedKey, sshd.passphrase);
      const h = home(knownLine());
      // no identity files at all: the agent's (right, encrypted-on-disk) key does it
      const conn = await sshConnect(target(), direct(h, { identityFiles: [], agentSocket: agent.socket }));
      const s = await conn.exec('echo via-agent');
      assert.equal((await readAll(s)).text, 'via-agent\n');
      await conn.close();

      // IdentitiesOnly with -i naming only the wrong key: the agent may offer that key alone
      const cfg = path.join(h, 'cfg');
      fs.writeFileSync(cfg, `Host t\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  IdentitiesOnly yes\n`);
      const err = await rejectsWith(sshConnect({ host: 't' }, { configFile: cfg, homeDir: h, agentSocket: agent.socket, identityFiles: [wrong], askPassphrase: false }));
      assert.equal(err.message, `${user}@t: permission denied (publickey); tried: agent (1 key)`);
    } finally {
      await agent.stop();
    }
    // SSH_AUTH_SOCK pointing nowhere: reported, not fatal
    const h = home(knownLine());
    const err = await rejectsWith(sshConnect(target(), direct(h, { identityFiles: [], agentSocket: path.join(dir, 'no-agent.sock') })));
    assert.equal(err.message, `${user}@127.0.0.1: permission denied (publickey); tried: agent (not reachable)`);
  });

  it('an encrypted key is unlocked through askPassphrase (a wrong passphrase asks again)', async () => {
    const h = home(knownLine());
    const asked: { prompt: string; attempt: number }[] = [];
    const conn = await sshConnect(
      target(),
      direct(h, {
        identityFiles: [sshd.encryptedKey],
        askPassphrase: async (req) => {
          asked.push({ prompt: req.prompt, attempt: req.attempt });
          return req.attempt === 1 ? 'wrong' : sshd.passphrase;
        },
      }),
    );
    await conn.close();
    assert.deepEqual(asked, [
      { prompt: `Enter passphrase for key '${sshd.encryptedKey}': `, attempt: 1 },
      { prompt: `Enter passphrase for key '${sshd.encryptedKey}': `, attempt: 2 },
    ]);
  });

  it('an encrypted key without a terminal (or in BatchMode) fails with a clear error naming it and suggesting ssh-agent', async () => {
    const h = home(knownLine());
    const noTty = await rejectsWith(sshConnect(target(), direct(h, { identityFiles: [sshd.encryptedKey] })));
    assert.equal(
      noTty.message,
      `${user}@127.0.0.1: permission denied (publickey); tried: ${sshd.encryptedKey} (encrypted, and there is no terminal to ask for its passphrase: load it into ssh-agent with \`ssh-add ${sshd.encryptedKey}\`)`,
    );
    const batch = await rejectsWith(
      sshConnect(target(), direct(h, { identityFiles: [sshd.encryptedKey], batchMode: true, askPassphrase: async () => sshd.passphrase })),
    );
    assert.match(batch.message, /\(encrypted, and BatchMode forbids passphrase prompts: load it into ssh-agent with `ssh-add /);

    // the default prompter, in a process without a controlling terminal (setsid)
    const script = path.join(dir, 'no-tty.mjs');
    fs.writeFileSync(
      script,
      `import { sshConnect } from ${JSON.stringify(new URL('../src/ssh/index.js', import.meta.url).href)};
try {
  const c = await sshConnect(${JSON.stringify(target())}, ${JSON.stringify({ configFile: 'none', homeDir: h, agentSocket: '', identityFiles: [sshd.encryptedKey] })});
  c.abort();
  console.log('connected');
} catch (e) {
  console.log(e.message);
}
`,
    );
    const child = spawn(process.execPath, [script], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => (out += d));
    await new Promise((r) => child.once('exit', r));
    assert.equal(out.trim(), noTty.message);
  });

  it('remote command not found → RemoteCommandNotFoundError through the stream', async () => {
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd));
    try {
      const s = await conn.exec('smartcopy-not-installed-here agent --protocol stdio');
      const { error } = await readAll(s);
      assert.ok(error instanceof RemoteCommandNotFoundError, String(error));
      assert.ok(isRemoteCommandNotFound(error));
      assert.equal(error.code, 'SC_ERR_CONNECT');
      assert.match(error.message, /^command not found on .*: bash: .*smartcopy-not-installed-here: command not found$/);
      assert.equal(s.state, 'aborted');
    } finally {
      await conn.close();
    }
  });

  it('a command failing with a message aborts its stream with that line; a silent non-zero exit only ends it', async () => {
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd));
    try {
      const s = await conn.exec('echo partial; echo "first line" >&2; echo "agent: disk full" >&2; exit 3');
      const got: Buffer[] = [];
      const error = await new Promise<Error>((resolve) => s.setReader({ data: (c) => got.push(c), end: () => resolve(new Error('ended')), error: resolve }));
      assert.ok(error instanceof RemoteCommandError, String(error));
      assert.equal(error.message, `echo on ${user}@${sshd.alias} failed (exit status 3): agent: disk full`);
      assert.equal(error.exit.code, 3);
      assert.ok(error instanceof ConnectionClosedError);

      const quiet = await conn.exec('exit 4');
      assert.deepEqual(await readAll(quiet), { text: '' });
      assert.equal((await quiet.exit).code, 4);
    } finally {
      await conn.close();
    }
  });

  it('killing the server side of the connection aborts every open stream with ConnectionClosedError', async () => {
    const before = new Set(sshd.sessionPids());
    const conn = await sshConnect({ host: sshd.alias }, fixtureOpts(sshd));
    const streams = await Promise.all([conn.exec('cat'), conn.exec('cat')]);
    const errors: Error[] = [];
    for (const s of streams) s.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
    streams[0]!.write(Buffer.alloc(1024 * 1024));
    // only this test's connection: the compliance suite may hold others
    const mine = sshd.sessionPids().filter((p) => !before.has(p));
    assert.ok(mine.length > 0);
    for (const p of mine) {
      try {
        process.kill(p, 'SIGKILL');
      } catch (e) {
        // a process of the session that exited between the listing and the kill
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }
    await conn.closed;
    await until(() => errors.length === 2);
    for (const e of errors) {
      assert.ok(e instanceof ConnectionClosedError, String(e));
      assert.match(e.message, /^SSH connection to .* lost/);
    }
    await assert.rejects(conn.exec('true'), ConnectionClosedError);
  });

  it('ProxyJump: through a second sshd, verifying both host keys; losing the jump host drops the connection', async () => {
    const jump = await startSshd({ extraConfig: 'LogLevel DEBUG1', alias: 'jump' });
    try {
      const h = home(knownLine());
      const cfg = path.join(h, 'cfg');
      fs.writeFileSync(
        cfg,
        [
          'Host target',
          '  HostName 127.0.0.1',
          `  Port ${sshd.port}`,
          `  ProxyJump jumper`,
          'Host jumper',
          '  HostName 127.0.0.1',
          `  Port ${jump.port}`,
          `  User ${jump.user}`,
          'Host *',
          `  IdentityFile ${sshd.clientKey}`,
          `  IdentityFile ${jump.clientKey}`,
          '',
        ].join('\n'),
      );
      // the jump host's key is not known yet: refused, naming the jump host
      const err = await rejectsWith(sshConnect({ host: 'target' }, { configFile: cfg, homeDir: h, agentSocket: '' }));
      assert.ok(err instanceof HostKeyError);
      assert.equal(err.host, `[127.0.0.1]:${jump.port}`);

      fs.appendFileSync(path.join(h, '.ssh/known_hosts'), fs.readFileSync(jump.knownHosts));
      const conn = await sshConnect({ host: 'target' }, { configFile: cfg, homeDir: h, agentSocket: '' });
      const s = await conn.exec('echo through the jump host');
      assert.equal((await readAll(s)).text, 'through the jump host\n');
      await until(() => jump.log().includes(`target 127.0.0.1 port ${sshd.port}`));

      const open = await conn.exec('cat');
      const errors: Error[] = [];
      open.setReader({ data() {}, end() {}, error: (e) => void errors.push(e) });
      jump.killSessions();
      await conn.closed;
      await until(() => errors.length === 1);
      assert.ok(errors[0] instanceof ConnectionClosedError);
    } finally {
      await jump.stop();
    }
  });

  it('connection refused, a silent server and aborted connects are one-line SmartcopyErrors', async () => {
    // accepts, never says a word
    const held = new Set<net.Socket>();
    const srv = net.createServer((sock) => void held.add(sock.on('error', () => undefined)));
    await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    const timeout = await rejectsWith(sshConnect({ host: '127.0.0.1', port }, direct(home(), { timeoutMs: 300 })));
    assert.equal(timeout.code, 'SC_ERR_TIMEOUT');
    assert.equal(timeout.message, `${user}@127.0.0.1: no SSH handshake with 127.0.0.1:${port} within 0.3 s — is it an SSH server, and reachable? (ConnectTimeout in the SSH config sets this limit)`);
    for (const c of held) c.destroy();
    await new Promise<void>((r) => srv.close(() => r()));

    const h = home();
    const refused = await rejectsWith(sshConnect({ host: '127.0.0.1', port }, direct(h)));
    assert.equal(refused.code, 'SC_ERR_CONNECT');
    assert.equal(refused.message, `cannot connect to 127.0.0.1:${port}: connection refused — is sshd listening on port ${port} there?`);
    const aborted = await rejectsWith(sshConnect(target(), direct(home(knownLine()), { signal: AbortSignal.abort() })));
    assert.equal(aborted.code, 'SC_ERR_ABORTED');
  });

  it("more channels than sshd's MaxSessions: SC_ERR_CONNECT saying so", async () => {
    const small = await startSshd({ extraConfig: 'MaxSessions 2' });
    try {
      const conn = await sshConnect({ host: small.alias }, fixtureOpts(small));
      const open = [await conn.exec('cat'), await conn.exec('cat')];
      const err = await rejectsWith(conn.exec('cat'));
      assert.equal(err.code, 'SC_ERR_CONNECT');
      assert.match(err.message, /: Channel open failure: open failed — sshd allows MaxSessions channels per connection \(10 by default\): use fewer streams$/);
      for (const s of open) s.abort();
      conn.abort();
      await conn.closed;
    } finally {
      await small.stop();
    }
  });

  it('sshTransport: dial() opens streams running remoteCommand; listen() is unsupported; sftp() works', async () => {
    const t = sshTransport({ ...direct(home(knownLine())), remoteCommand: 'cat' });
    assert.equal(t.kind, 'ssh');
    await assert.rejects(t.listen({}, () => {}), { code: 'SC_ERR_UNSUPPORTED' });
    const conn = (await t.dial(`${sshd.user}@127.0.0.1:${sshd.port}`)) as SshConnection;
    try {
      const s = await conn.openStream();
      const got = sink(s, { keep: true });
      s.write(Buffer.from('echoed by cat'));
      await s.end();
      assert.equal((await got.result).data!.toString(), 'echoed by cat');
      await s.closed;
      const sftp = await conn.sftp();
      const names = await new Promise<string[]>((resolve, reject) =>
        sftp.readdir(sshd.dir, (err, list) => (err ? reject(err) : resolve(list.map((e) => e.filename)))),
      );
      assert.ok(names.includes('authorized_keys'));
      sftp.end();
    } finally {
      await conn.close();
    }
  });
});
