#!/usr/bin/env node
// Bundles the compiled CLI (after `tsc -b`) into client/dist/bundle/: one file for the main
// thread and one per worker. Loading ~150 small ESM/CJS modules costs a few hundred ms at every
// start, which dominates small copies and no-change re-syncs; one bundled file loads in a
// fraction of that. The workers are found next to the bundle (new URL('./x.js', import.meta.url)),
// and so is the .proto schema, copied here.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const outdir = path.join(root, 'client/dist/bundle');
fs.rmSync(outdir, { recursive: true, force: true });
fs.mkdirSync(outdir, { recursive: true });
await build({
  entryPoints: {
    smartcopy: path.join(root, 'client/dist/src/cli/main.js'),
    'walk-worker': path.join(root, 'agent/dist/src/scan/walk-worker.js'),
    'copy-worker': path.join(root, 'agent/dist/src/apply/copy-worker.js'),
    'match-worker': path.join(root, 'agent/dist/src/transfer/match-worker.js'),
  },
  outdir,
  outExtension: { '.js': '.js' },
  // shared code and lazily imported modules (hashing, LZ4) become chunks loaded on demand, so a
  // walk worker does not parse the protocol codecs
  splitting: true,
  chunkNames: '[name]-[hash]',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // native addon: resolved from node_modules at run time
  // native addons find their binaries relative to their own files, and ssh2/selfsigned are
  // CommonJS with optional native parts and export shapes the bundle's interop breaks: all load
  // from node_modules, and only when their transport is used
  external: ['lz4-napi', 'ssh2', 'selfsigned', '@matrixai/quic', '@fails-components/webtransport'],
  // CJS dependencies bundled into ESM still call require() for Node built-ins
  banner: { js: "import { createRequire as __scCreateRequire } from 'node:module'; const require = __scCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  legalComments: 'none',
  minify: process.env.SC_BUNDLE_DEBUG !== '1',
});
fs.copyFileSync(path.join(root, 'protocol/src/schema/smartcopy.proto'), path.join(outdir, 'smartcopy.proto'));
fs.writeFileSync(path.join(outdir, 'package.json'), '{ "type": "module" }\n');
