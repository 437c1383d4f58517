// Builds web/dist/ from web/anonstats.js: a minified plain script exposing
// `window.anonstats` and a minified ES module. The output is committed so the Rust build
// needs no npm. Usage: node build.mjs [--check]  (--check fails if dist/ is stale).
import { build } from 'esbuild'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const web = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web')
const entry = join(web, 'anonstats.js')
const common = { entryPoints: [entry], bundle: true, minify: true, write: false,
  target: ['chrome80', 'firefox78', 'safari14', 'edge80'], legalComments: 'none' }
const outputs = {
  'anonstats.min.js': { ...common, format: 'iife', globalName: 'anonstats' },
  'anonstats.min.mjs': { ...common, format: 'esm' },
}
const check = process.argv.includes('--check')
let stale = []
mkdirSync(join(web, 'dist'), { recursive: true })
for (const [name, opts] of Object.entries(outputs)) {
  const out = await build(opts)
  const text = out.outputFiles[0].text
  const path = join(web, 'dist', name)
  let old = ''
  try { old = readFileSync(path, 'utf8') } catch {}
  if (old !== text) {
    if (check) stale.push(name)
    else writeFileSync(path, text)
  }
  console.log(`${name}: ${text.length} bytes`)
}
if (stale.length) {
  console.error(`web/dist is stale (${stale.join(', ')}): run node tests/browser/build.mjs`)
  process.exit(1)
}
