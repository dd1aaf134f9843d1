import fs from 'node:fs';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthenticationType, IdentityCallback, NextAuthHandler, ParsedKey, SignCallback, SigningRequestOptions } from 'ssh2';
import { SmartcopyError } from '@smartcopy/protocol';
import { displayPath } from './config.js';
import type { ResolvedSshHost } from './config.js';

const { BaseAgent, OpenSSHAgent, utils } = ssh2;

/** How long listing the agent's keys may take before we go on without it. */
export const AGENT_QUERY_TIMEOUT_MS = 5_000;
/** Passphrase attempts per key, as OpenSSH's NumberOfPasswordPrompts. */
export const PASSPHRASE_ATTEMPTS = 3;

export interface PassphraseRequest {
  /** absolute path of the encrypted key */
  keyFile: string;
  /** OpenSSH's prompt text: "Enter passphrase for key '~/.ssh/id_ed25519': " */
  prompt: string;
  /** 1 for the first try; a wrong passphrase asks again */
  attempt: number;
}

/** Returns the passphrase, or undefined to skip the key. */
export type AskPassphrase = (req: PassphraseRequest) => Promise<string | undefined>;

/** An agent limited to some of its keys (IdentitiesOnly), with the key list fetched once. */
class ListedAgent extends BaseAgent {
  readonly #inner: InstanceType<typeof OpenSSHAgent>;
  readonly #keys: ParsedKey[];

  constructor(inner: InstanceType<typeof OpenSSHAgent>, keys: ParsedKey[]) {
    super();
    this.#inner = inner;
    this.#keys = keys;
  }

  override getIdentities(cb: IdentityCallback<ParsedKey>): void {
    cb(undefined, this.#keys);
  }

  override sign(pubKey: ParsedKey, data: Buffer, options: SigningRequestOptions | SignCallback, cb?: SignCallback): void {
    if (typeof options === 'function') this.#inner.sign(pubKey, data, options);
    else this.#inner.sign(pubKey, data, options, cb);
  }
}

function listAgentKeys(socket: string): Promise<{ agent: InstanceType<typeof OpenSSHAgent>; keys: ParsedKey[] } | undefined> {
  const agent = new OpenSSHAgent(socket);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), AGENT_QUERY_TIMEOUT_MS);
    timer.unref();
    agent.getIdentities((err, keys) => {
      clearTimeout(timer);
      resolve(err || !keys ? undefined : { agent, keys: keys as ParsedKey[] });
    });
  });
}

/** The public key blob of an identity file: its .pub, else the unencrypted header of an OpenSSH key. */
function publicBlobOf(file: string, privateText: string | undefined): Buffer | undefined {
  try {
    const pub = utils.parseKey(fs.readFileSync(`${file}.pub`));
    if (!(pub instanceof Error)) return pub.getPublicSSH();
  } catch {
    // no .pub: look inside the key
  }
  if (privateText === undefined) return undefined;
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]+?)-----END OPENSSH PRIVATE KEY-----/.exec(privateText);
  if (m) {
    // openssh-key-v1\0, string cipher, string kdf, string kdfoptions, uint32 n, string pubkey (never encrypted)
    const b = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
    const magic = 'openssh-key-v1\0';
    if (b.toString('latin1', 0, magic.length) !== magic) return undefined;
    let off = magic.length;
    for (let i = 0; i < 3; i++) {
      if (off + 4 > b.length) return undefined;
      off += 4 + b.readUInt32BE(off);
    }
    off += 4;
    if (off + 4 > b.length) return undefined;
    const len = b.readUInt32BE(off);
    return off + 4 + len <= b.length ? b.subarray(off + 4, off + 4 + len) : undefined;
  }
  const parsed = utils.parseKey(privateText);
  return parsed instanceof Error ? undefined : parsed.getPublicSSH();
}

export interface AuthPlanInit {
  host: ResolvedSshHost;
  /** the ssh-agent socket, or undefined for none */
  agentSocket: string | undefined;
  /** BatchMode, or no way to prompt: never ask for a passphrase */
  batchMode: boolean;
  /** undefined: no way to ask (no terminal) */
  askPassphrase: AskPassphrase | undefined;
  /** the handshake deadline stops while a human types */
  onPrompt?(active: boolean): void;
}

/**
 * Our authentication order, driven through ssh2's authHandler: the agent's keys (only those
 * matching the identity files under IdentitiesOnly), then each identity file (-i, IdentityFile,
 * or the defaults that exist), skipping keys the agent already offered. Encrypted keys are
 * unlocked with a prompt when one is possible. Everything tried is remembered for the one-line
 * failure message.
 */
export class AuthPlan {
  readonly #init: AuthPlanInit;
  #agent: { agent: InstanceType<typeof BaseAgent>; count: number } | undefined;
  readonly #tried: string[] = [];
  #fileQueue: string[] | undefined;
  #agentBlobs: Buffer[] = [];
  #agentNote: string | undefined;
  #methods: readonly string[] = ['publickey'];
  #exhausted = false;
  #fatal: Error | undefined;

  constructor(init: AuthPlanInit) {
    this.#init = init;
  }

  /** true once the handler gave up (the next client-authentication error is the final one) */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** what stopped authentication other than the server saying no (Ctrl-C at a prompt) */
  get fatal(): Error | undefined {
    return this.#fatal;
  }

  /** Query the agent (once, before connecting, so its key count is known). */
  async prepare(): Promise<void> {
    const { host, agentSocket } = this.#init;
    if (agentSocket === undefined) return;
    const listed = await listAgentKeys(agentSocket);
    if (listed === undefined) {
      this.#agentNote = 'agent (not reachable)';
      return;
    }
    let keys = listed.keys;
    if (host.identitiesOnly) {
      const wanted = host.identityFiles.map((f) => publicBlobOf(f, readText(f))).filter((b): b is Buffer => b !== undefined);
      keys = keys.filter((k) => wanted.some((w) => w.equals(k.getPublicSSH())));
    }
    if (keys.length === 0) {
      if (listed.keys.length === 0) this.#agentNote = 'agent (no keys)';
      return;
    }
    this.#agentBlobs = keys.map((k) => k.getPublicSSH());
    this.#agent = { agent: new ListedAgent(listed.agent, keys), count: keys.length };
  }

  /** ssh2's authHandler: called for the first method and after each failure. */
  readonly handler = (methodsLeft: AuthenticationType[] | null, _partial: boolean | null, next: NextAuthHandler): void => {
    if (methodsLeft) this.#methods = methodsLeft;
    if (methodsLeft && !methodsLeft.includes('publickey')) {
      this.#giveUp(next);
      return;
    }
    void this.#nextMethod().then(
      (m) => (m === undefined ? this.#giveUp(next) : next(m)),
      (err: unknown) => {
        this.#fatal = err instanceof Error ? err : new SmartcopyError('SC_ERR_AUTH', String(err));
        this.#giveUp(next);
      },
    );
  };

  #giveUp(next: NextAuthHandler): void {
    this.#exhausted = true;
    (next as unknown as (m: false) => void)(false);
  }

  async #nextMethod(): Promise<AnyAuthMethod | undefined> {
    const user = this.#init.host.user;
    const agent = this.#agent;
    this.#agent = undefined;
    if (agent !== undefined) {
      this.#tried.push(`agent (${agent.count} key${agent.count === 1 ? '' : 's'})`);
      return { type: 'agent', username: user, agent: agent.agent };
    }
    this.#fileQueue ??= [...this.#init.host.identityFiles];
    for (let file = this.#fileQueue.shift(); file !== undefined; file = this.#fileQueue.shift()) {
      const key = await this.#loadKey(file);
      if (key !== undefined) return { type: 'publickey', username: user, key };
    }
    return undefined;
  }

  async #loadKey(file: string): Promise<ParsedKey | undefined> {
    const home = this.#init.host.homeDir;
    const shown = displayPath(file, home);
    const text = readText(file);
    if (text === undefined) {
      if (!this.#init.host.defaultIdentityFiles) this.#tried.push(`${shown} (not found)`);
      return undefined;
    }
    const blob = publicBlobOf(file, text);
    // the agent already offered this key
    if (blob !== undefined && this.#agentBlobs.some((b) => b.equals(blob))) return undefined;
    let parsed: ParsedKey | Error | undefined = utils.parseKey(text);
    if (parsed instanceof Error && /no passphrase given/i.test(parsed.message)) {
      parsed = await this.#unlock(file, shown, text);
      if (parsed === undefined) return undefined;
    }
    if (parsed instanceof Error || !parsed.isPrivateKey()) {
      this.#tried.push(`${shown} (not a private key ssh2 can use: ${parsed instanceof Error ? parsed.message : 'public key only'})`);
      return undefined;
    }
    this.#tried.push(shown);
    return parsed;
  }

  async #unlock(file: string, shown: string, text: string): Promise<ParsedKey | undefined> {
    const ask = this.#init.askPassphrase;
    const addHint = `load it into ssh-agent with \`ssh-add ${shown}\``;
    if (this.#init.batchMode || ask === undefined) {
      const why = this.#init.batchMode ? 'BatchMode forbids passphrase prompts' : 'there is no terminal to ask for its passphrase';
      this.#tried.push(`${shown} (encrypted, and ${why}: ${addHint})`);
      return undefined;
    }
    for (let attempt = 1; attempt <= PASSPHRASE_ATTEMPTS; attempt++) {
      this.#init.onPrompt?.(true);
      let pass: string | undefined;
      try {
        pass = await ask({ keyFile: file, prompt: `Enter passphrase for key '${shown}': `, attempt });
      } finally {
        this.#init.onPrompt?.(false);
      }
      if (pass === undefined || pass === '') {
        this.#tried.push(`${shown} (encrypted; no passphrase given)`);
        return undefined;
      }
      const parsed = utils.parseKey(text, pass);
      if (!(parsed instanceof Error)) return parsed;
    }
    this.#tried.push(`${shown} (wrong passphrase)`);
    return undefined;
  }

  /** The one-line failure: `user@host: permission denied (publickey); tried: agent (2 keys), ~/.ssh/id_ed25519`. */
  failure(extra?: string): SmartcopyError {
    const host = this.#init.host;
    const who = `${host.user}@${host.alias}`;
    const methods = this.#methods.length > 0 ? this.#methods.join(',') : 'publickey';
    const tried = [...(this.#agentNote ? [this.#agentNote] : []), ...this.#tried];
    let what: string;
    if (!this.#methods.includes('publickey')) {
      what = `the server does not accept public keys${tried.length > 0 ? `; tried: ${tried.join(', ')}` : ''}`;
    } else if (tried.length > 0) {
      what = `tried: ${tried.join(', ')}`;
    } else {
      const agent = this.#init.agentSocket === undefined ? 'no ssh-agent (SSH_AUTH_SOCK is not set)' : 'no ssh-agent keys';
      const files = host.identityFiles.map((f) => displayPath(f, host.homeDir)).join(', ');
      what = `no key to offer: ${agent} and none of ${files} exists; create one with ssh-keygen, or pass -i KEY`;
    }
    return new SmartcopyError('SC_ERR_AUTH', `${who}: permission denied (${methods}); ${what}${extra ? ` (${extra})` : ''}`);
  }
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
