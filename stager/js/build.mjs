#!/usr/bin/env node
// Nimbus JS build driver: componentize one JS module into a wasi:http@0.2.10 component.
// Usage: node build.mjs <app.js> <wit dir> <out.wasm>
// The componentize-js toolchain is loaded from $NIMBUS_JS_TOOLCHAIN
// (default /root/.cache/nimbus/toolchains/js), an `npm install --prefix` dir.
// ESM ignores NODE_PATH, so the module is imported by absolute file URL.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

function fail(msg) {
  process.stderr.write(`build.mjs: error: ${msg}\n`);
  process.exit(1);
}

const [appArg, witArg, outArg] = process.argv.slice(2);
if (!appArg || !witArg || !outArg) {
  fail('usage: node build.mjs <app.js> <wit dir> <out.wasm>');
}
const app = resolve(appArg);
const wit = resolve(witArg);
const out = resolve(outArg);
if (!existsSync(app)) fail(`app source not found: ${app}`);
if (!existsSync(wit)) fail(`WIT dir not found: ${wit}`);

const toolchain = resolve(
  process.env.NIMBUS_JS_TOOLCHAIN || '/root/.cache/nimbus/toolchains/js',
);
const pkgDir = join(toolchain, 'node_modules', '@bytecodealliance', 'componentize-js');
let entry;
try {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  entry = join(pkgDir, pkg.exports?.import ?? 'src/componentize.js');
} catch (e) {
  fail(`componentize-js not installed in ${toolchain} (${e.message})`);
}

let componentize;
try {
  ({ componentize } = await import(pathToFileURL(entry).href));
} catch (e) {
  fail(`cannot load componentize-js from ${entry}: ${e.message}`);
}

// Pre-parse with the same parser componentize-js uses (oxc-parser) so syntax
// errors are reported with file:line:col and a code frame, not just a count.
try {
  const oxc = createRequire(join(toolchain, 'package.json'))('oxc-parser');
  const { errors } = oxc.parseSync(app, readFileSync(app, 'utf8'), { sourceType: 'module' });
  if (errors.length > 0) {
    fail(`syntax error(s) in ${app}:\n` + errors.map((e) => e.codeframe || e.message).join('\n'));
  }
} catch (e) {
  if (e?.code !== 'MODULE_NOT_FOUND') throw e; // parser missing: let componentize report
}

const started = Date.now();
try {
  const { component } = await componentize({
    sourcePath: app,
    witPath: wit,
    worldName: process.env.NIMBUS_JS_WORLD || 'app',
    // componentize-js runs wizer with only the variables given here; without HOME, wizer looks
    // for its cache in the build user's passwd home, which an unprivileged user cannot write.
    env: { HOME: process.env.HOME },
  });
  await writeFile(out, component);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`build.mjs: wrote ${out} (${component.length} bytes) in ${secs}s\n`);
} catch (e) {
  const msg = (e && (e.stack || e.message)) || String(e);
  fail(`componentize failed for ${app}:\n${msg}`);
}
