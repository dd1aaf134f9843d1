import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { SmartcopyError } from '../errors.js';
import { MESSAGE_NAMES, MsgType, type MsgTypeValue } from './messages.js';

/*
 * 64-bit fields must decode as JS numbers, not Long objects: sizes, offsets and mtimes are read
 * on every frame and compared with plain numbers everywhere else. This setting is global to the
 * protobufjs instance, which only this package uses.
 */
(protobuf.util as { Long: unknown }).Long = undefined;
protobuf.configure();

const PROTO_PACKAGE = 'smartcopy.v1';

/*
 * tsc does not copy the .proto, so compiled code (dist/src/schema/) reaches back to the source
 * tree; code run straight from src/ (a TS loader) finds it next to itself.
 */
const PROTO_CANDIDATES = [
  new URL('../../../src/schema/smartcopy.proto', import.meta.url),
  new URL('./smartcopy.proto', import.meta.url),
];

function loadProtoText(): string {
  const tried: string[] = [];
  for (const url of PROTO_CANDIDATES) {
    try {
      return readFileSync(url, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      tried.push(url.pathname);
    }
  }
  throw new SmartcopyError('SC_ERR_INTERNAL', `protocol schema smartcopy.proto not found (looked at ${tried.join(', ')})`);
}

/** The parsed schema (package smartcopy.v1). */
export const root: protobuf.Root = protobuf.parse(loadProtoText(), { keepCase: false }).root;

/** Shared default for absent `bytes` fields; zero-length, so nobody can write into it. */
const EMPTY_BYTES = Buffer.alloc(0);

/*
 * protobufjs' decoded messages keep absent fields' defaults on the prototype, so every read of
 * an absent field walks the prototype chain and objects of one type vary in shape. A generated
 * constructor that sets every field as an own property, in declaration order, gives each message
 * type one stable hidden class and proto3 defaults that are plain own values.
 */
function installConstructor(type: protobuf.Type): void {
  type.fieldsArray.forEach((f) => f.resolve());
  const lines: string[] = [];
  for (const f of type.fieldsArray) {
    const name = JSON.stringify(f.name);
    let init: string;
    if (f.map) init = '{}';
    else if (f.repeated) init = '[]';
    else if (f.resolvedType instanceof protobuf.Type) init = 'null';
    else if (f.resolvedType instanceof protobuf.Enum) init = '0';
    else if (f.type === 'bytes') init = 'EMPTY';
    else if (f.type === 'string') init = "''";
    else if (f.type === 'bool') init = 'false';
    else init = '0';
    lines.push(`this[${name}] = ${init};`);
  }
  lines.push('if (p) for (var k of Object.keys(p)) if (p[k] != null) this[k] = p[k];');
  const ctor = new Function('EMPTY', `return function ${type.name}Message(p) {\n${lines.join('\n')}\n};`)(EMPTY_BYTES);
  type.ctor = ctor as protobuf.Constructor<object>;
}

function allTypes(ns: protobuf.NamespaceBase, out: protobuf.Type[] = []): protobuf.Type[] {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) out.push(nested);
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) allTypes(nested, out);
  }
  return out;
}

for (const t of allTypes(root)) installConstructor(t);

/** Look up a message type of the schema by its proto name (e.g. 'Entry'). */
export function messageType(name: string): protobuf.Type {
  return root.lookupType(`${PROTO_PACKAGE}.${name}`);
}

/** protobuf Type of each frame type's header, indexed by MsgType value. */
export const headerTypes: readonly (protobuf.Type | undefined)[] = (() => {
  const table: (protobuf.Type | undefined)[] = [];
  for (const value of Object.values(MsgType)) table[value] = messageType(MESSAGE_NAMES[value]);
  return table;
})();

/** The proto enum `name` as a name -> number record (for checks and tools). */
export function protoEnum(name: string): Readonly<Record<string, number>> {
  return root.lookupEnum(`${PROTO_PACKAGE}.${name}`).values;
}

/** True when `type` is a frame type this version knows. */
export function isMsgType(type: number): type is MsgTypeValue {
  return headerTypes[type] !== undefined;
}
