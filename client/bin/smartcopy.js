#!/usr/bin/env node
// The libuv threadpool serves every fs call of the copy engine; size it before first use.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '8';
// The bundled build (npm run build) starts several times faster than the module tree.
let mod;
try {
  mod = await import('../dist/bundle/smartcopy.js');
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes('bundle')) throw e;
  mod = await import('../dist/src/cli/main.js');
}
process.exitCode = await mod.main(process.argv.slice(2));
