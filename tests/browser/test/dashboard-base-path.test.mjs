// The dashboard under `serve --base-path /stats`, behind nginx running the README's
// docs/deploy/nginx-base-path.conf (its TLS from a throw-away certificate): Chromium logs
// in, the overview renders from the data, and every request the page makes stays under
// /stats/ and succeeds.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { join } from 'node:path'
import { ROOT, launchBrowser, screenshot, tempDir, sleep } from '../lib.mjs'
import { startSeededCollector } from '../dashboard-data.mjs'
import { dashboardSkipReason, waitReady, panelInfo } from '../dashboard-helpers.mjs'

function nginxSkipReason() {
  const ok = spawnSync('nginx', ['-v']).status === 0 && spawnSync('openssl', ['version']).status === 0
  if (ok) return null
  if (process.env.CI) throw new Error('nginx and openssl are required in CI (apt-get install nginx openssl)')
  return 'nginx or openssl is missing (apt-get install nginx openssl)'
}

const skip = dashboardSkipReason() || nginxSkipReason() || false
let collector
let browser
let nginx
let dir

const freePort = () => new Promise((ok) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)) })
})

async function waitListening(port) {
  for (let i = 0; i < 1000; i++) {
    const up = await new Promise((ok) => {
      const c = connect(port, '127.0.0.1', () => { c.end(); ok(true) }).on('error', () => ok(false))
    })
    if (up) return
    await sleep(20)
  }
  throw new Error(`nginx did not listen: ${readFileSync(join(dir, 'error.log'), 'utf8')}`)
}

let origin
before(async () => {
  if (skip) return
  collector = await startSeededCollector({
    events: 3000, machines: 50,
    args: ['--base-path', '/stats', '--public-url', 'https://example.org/stats'],
  })
  dir = tempDir('nginx')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-subj', '/CN=example.org', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'pipe' })
  const port = await freePort()
  const upstream = new URL(collector.url).host
  const site = readFileSync(join(ROOT, 'docs/deploy/nginx-base-path.conf'), 'utf8')
    .replace('listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`)
    .replace('/etc/ssl/example.org/fullchain.pem', join(dir, 'cert.pem'))
    .replace('/etc/ssl/example.org/privkey.pem', join(dir, 'key.pem'))
    .replace('127.0.0.1:9470', upstream)
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;
error_log ${dir}/error.log;\nevents {}\nhttp {\naccess_log off;\nclient_body_temp_path ${dir}/body;
proxy_temp_path ${dir}/proxy;\nfastcgi_temp_path ${dir}/fastcgi;\nuwsgi_temp_path ${dir}/uwsgi;
scgi_temp_path ${dir}/scgi;\n${site}\n}\n`)
  nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' })
  await waitListening(port)
  origin = `https://127.0.0.1:${port}`
  browser = await launchBrowser({ ignoreHTTPSErrors: true })
})
after(async () => {
  await browser?.close()
  nginx?.kill('SIGKILL')
  await collector?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

test('the dashboard works under /stats/ through nginx', { skip }, async () => {
  const page = await browser.context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))
  const answers = []
  let loggedIn = false
  page.on('response', (r) => answers.push([r.url(), r.status(), loggedIn]))

  // /stats without its slash ends on the page.
  await page.goto(`${origin}/stats`)
  assert.equal(new URL(page.url()).pathname, '/stats/')
  // The log-in screen shows once the page's API calls were answered 401.
  await page.fill('#token', collector.adminToken)
  loggedIn = true
  await page.click('#login')
  await waitReady(page, 'overview')
  for (const id of ['p-active', 'p-events', 'p-versions']) {
    assert.equal((await panelInfo(page, id)).state, 'ready', id)
  }
  assert.ok((await panelInfo(page, 'p-active')).total > 0, 'active machines from the data')
  const cookie = (await browser.context.cookies()).find((c) => c.name === 'anonstats_session')
  assert.ok(cookie?.secure, 'the session cookie is Secure')
  assert.equal(cookie.path, '/stats', 'and the sub-path\'s alone')
  await screenshot(page, 'dashboard-base-path')

  assert.deepEqual(errors, [])
  assert.ok(answers.length > 10, `${answers.length} requests`)
  for (const [url, status, after] of answers) {
    const { pathname } = new URL(url)
    assert.ok(pathname.startsWith('/stats/') || (pathname === '/stats' && status === 301), `${url} is outside /stats/`)
    const refusedBeforeLogIn = !after && status === 401 && pathname.startsWith('/stats/api/v1/')
    assert.ok(status < 400 || refusedBeforeLogIn, `${url} answered ${status}`)
  }
  assert.ok(answers.some(([u]) => u.includes('/stats/api/v1/insights/')), 'the API was called under /stats/')
  await page.close()
})
