// Shared helpers of the browser tests: start the real collector and demo agent on
// 127.0.0.1 with ephemeral ports and temp dirs, read the store back with `anonstats export`,
// launch Debian's Chromium through playwright-core, serve test pages from another origin.
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, mkdirSync, rmSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve, extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const ANONSTATS_BIN = process.env.ANONSTATS_BIN || join(ROOT, 'target/debug/anonstats')
export const DEMO_AGENT_BIN =
  process.env.DEMO_AGENT_BIN || join(ROOT, 'target/debug/examples/demo-agent')
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium'
export const ARTIFACTS = join(ROOT, 'tests/artifacts')

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic',
]

/**
 * Why the browser tests cannot run here, or null. In CI (env CI set) a missing Chromium or
 * binary is an error, not a skip.
 */
export function skipReason() {
  return whyNot() || false
}

function whyNot() {
  const missing = [CHROMIUM, ANONSTATS_BIN, DEMO_AGENT_BIN].filter((p) => !existsSync(p))
  if (!missing.length) return null
  const why = `missing ${missing.join(', ')} (apt-get install chromium; cargo build -p anonstats -p anonstats-client --bins --example demo-agent)`
  if (process.env.CI) throw new Error(`browser tests cannot run in CI: ${why}`)
  return why
}

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), `anonstats-${prefix}-`))
}

/** Spawns a process and resolves once a stdout line matches `ready` (with the match). */
function spawnUntil(bin, args, { env, ready, what }) {
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => { err += d })
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`${what} did not start in 20 s; stdout: ${out}\nstderr: ${err}`))
    }, 20_000)
    proc.stdout.on('data', (d) => {
      out += d
      const m = out.match(ready)
      if (m) {
        clearTimeout(timer)
        resolveReady({ proc, out: () => out, err: () => err, match: m })
      }
    })
    proc.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${what} exited with ${code}; stdout: ${out}\nstderr: ${err}`))
    })
  })
}

function stopProc(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve()
  return new Promise((done) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
    proc.once('exit', () => { clearTimeout(t); done() })
    proc.kill('SIGTERM')
  })
}

/** The tokens a new store was given: `<data dir>/initial-tokens.txt` (stdout is no terminal). */
export function initialTokens(dataDir) {
  const text = readFileSync(join(dataDir, 'initial-tokens.txt'), 'utf8')
  return {
    token: text.match(/^write token: (\S+)/m)?.[1],
    adminToken: text.match(/^admin token: (\S+)/m)?.[1],
  }
}

/** The collector (`anonstats serve`) on an ephemeral port with a fresh data dir. */
export async function startCollector() {
  const dataDir = tempDir('data')
  const started = spawnUntil(
    ANONSTATS_BIN,
    ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0'],
    { env: process.env, ready: /^listening on (http:\/\/[^\s]+)/m, what: 'anonstats serve' },
  )
  const { proc, out, match } = await started
  const { token, adminToken } = initialTokens(dataDir)
  if (!token) throw new Error(`no write token in ${dataDir}/initial-tokens.txt: ${out()}`)
  const url = match[1].replace(/\/$/, '')
  return {
    url,
    origin: new URL(url).origin,
    token,
    adminToken,
    dataDir,
    /** Every stored event, as `anonstats export --format ndjson` prints it. */
    exportEvents() {
      const text = execFileSync(ANONSTATS_BIN,
        ['export', '--data-dir', dataDir, '--format', 'ndjson'], { encoding: 'utf8' })
      return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
    },
    /** Polls the export until `pred(events)` holds or the time is up; returns the events. */
    async waitForEvents(pred, ms = 10_000) {
      const end = Date.now() + ms
      for (;;) {
        const events = this.exportEvents()
        if (pred(events) || Date.now() > end) return events
        await sleep(200)
      }
    },
    /** Capture requests the collector has answered (any result), from its /metrics. */
    async captureRequests() {
      const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })
      if (!res.ok) throw new Error(`/metrics answered ${res.status}: ${await res.text()}`)
      const text = await res.text()
      return text.split('\n').filter((l) => l.startsWith('anonstats_requests_total{'))
        .reduce((n, l) => n + Number(l.split(' ').pop()), 0)
    },
    async stop() {
      await stopProc(proc)
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** The demo agent with its dashboard on an ephemeral port. */
export async function startAgent({ collector, env = {}, configDir, stateDir, mode }) {
  const base = { ...process.env }
  delete base.DISABLE_TELEMETRY
  delete base.DO_NOT_TRACK
  const args = ['--endpoint', collector.url, '--token', collector.token,
    '--config-dir', configDir, '--state-dir', stateDir, '--dashboard', '127.0.0.1:0']
  if (mode) args.push('--mode', mode)
  const { proc, out, match } = await spawnUntil(DEMO_AGENT_BIN, args, {
    env: { ...base, ...env },
    ready: /dashboard on (http:\/\/[^\s]+)/,
    what: 'demo-agent',
  })
  return { url: match[1], proc, out, stop: () => stopProc(proc) }
}

/**
 * Chromium in a fresh user-data-dir; every request the browser makes is logged.
 * `ignoreHTTPSErrors` accepts a throw-away certificate.
 */
export async function launchBrowser({ ignoreHTTPSErrors = false } = {}) {
  const userDataDir = tempDir('chromium')
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    ignoreHTTPSErrors,
  })
  const requests = []
  context.on('request', (r) => requests.push(r))
  return {
    context,
    requests,
    async close() {
      await context.close()
      rmSync(userDataDir, { recursive: true, force: true })
    },
  }
}

/** What the page left behind: cookies and every kind of storage. */
export async function storageOf(page, context) {
  const inPage = await page.evaluate(async () => ({
    cookie: document.cookie,
    localStorage: localStorage.length,
    sessionStorage: sessionStorage.length,
    indexedDB: indexedDB.databases ? (await indexedDB.databases()).length : 0,
  }))
  return { ...inPage, contextCookies: (await context.cookies()).length }
}

export const NO_STORAGE = { cookie: '', localStorage: 0, sessionStorage: 0, indexedDB: 0,
  contextCookies: 0 }

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.json': 'application/json' }

/**
 * A static server on another port (another origin than the collector) for test pages:
 * `routes` maps a path to a file path or to a string of HTML.
 */
export async function servePages(routes) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname
    const r = routes[path]
    if (r === undefined) { res.writeHead(404).end(); return }
    const isFile = r.startsWith('/') && existsSync(r)
    const body = isFile ? readFileSync(r) : r
    res.writeHead(200, { 'content-type': TYPES[isFile ? extname(r) : '.html'],
      'cache-control': 'no-store' })
    res.end(body)
  })
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok))
  const { port } = server.address()
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((ok) => server.close(ok)) }
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
