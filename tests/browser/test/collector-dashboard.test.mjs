// The collector's dashboard at / in headless Chromium, on a generated data set
// (20000 events of 300 machines): log-in and its cookie, every page with charts and
// tables, filters that change the numbers, the crash drill-down, the live tail, SQL,
// shareable URLs, log-out. Screenshots of every page go to tests/artifacts/.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { ANONSTATS_BIN, launchBrowser, screenshot, startCollector } from '../lib.mjs'
import { startSeededCollector } from '../dashboard-data.mjs'
import { dashboardSkipReason, waitReady, openRoute, logIn, panelInfo, kpiValue, rerender } from '../dashboard-helpers.mjs'

const skip = dashboardSkipReason() || false
let collector
let browser
let page
const pageErrors = []

before(async () => {
  if (skip) return
  collector = await startSeededCollector({ events: 20000, machines: 300 })
  browser = await launchBrowser()
  page = await browser.context.newPage()
  await page.setViewportSize({ width: 1440, height: 900 })
  page.on('pageerror', (e) => pageErrors.push(e.message))
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) pageErrors.push(m.text())
  })
})
after(async () => {
  await browser?.close()
  await collector?.stop()
})

const sessionCookie = async () =>
  (await browser.context.cookies()).find((c) => c.name === 'anonstats_session')

test('the page is served with a strict CSP and no framing', { skip }, async () => {
  const res = await fetch(`${collector.url}/`)
  assert.equal(res.status, 200)
  const csp = res.headers.get('content-security-policy')
  assert.match(csp, /default-src 'none'/)
  assert.match(csp, /script-src 'self'/)
  assert.match(csp, /frame-ancestors 'none'/)
  assert.doesNotMatch(csp, /unsafe|\*/)
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
  const js = await fetch(`${collector.url}/dashboard/app.js`)
  assert.match(js.headers.get('content-type'), /javascript/)
  assert.equal((await fetch(`${collector.url}/dashboard/nope.js`)).status, 404)
})

test('a wrong token is refused with a clear message and no cookie', { skip }, async () => {
  await page.goto(`${collector.url}/`)
  await page.fill('#token', 'aa_not_a_real_token')
  await page.click('#login')
  await page.waitForFunction(() => document.querySelector('#login-error')?.textContent.length > 0)
  assert.match(await page.textContent('#login-error'), /refused.*unknown or revoked/)
  assert.equal(await sessionCookie(), undefined)
  assert.equal(await page.$('#view'), null)
  await screenshot(page, 'dashboard-login-refused')
})

test('logging in sets an HttpOnly, SameSite=Strict session cookie and opens the overview', { skip }, async () => {
  await logIn(page, collector.url, collector.adminToken)
  const c = await sessionCookie()
  assert.ok(c, 'session cookie set')
  assert.equal(c.httpOnly, true)
  assert.equal(c.sameSite, 'Strict')
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it')
})

test('overview: every panel renders charts and bars from the data', { skip }, async () => {
  const ms = await openRoute(page, collector.url, '#/overview?range=30')
  console.log(`# overview ready in ${ms} ms (20000 events, 300 machines)`)
  for (const id of ['p-active', 'p-events', 'p-versions']) {
    const p = await panelInfo(page, id)
    assert.equal(p.state, 'ready', `${id} ready`)
    assert.ok(p.canvases > 0, `${id} has a canvas`)
    assert.ok(p.points >= 30, `${id} has a point per day`)
  }
  assert.ok((await panelInfo(page, 'p-active')).total > 100, 'peak active machines')
  // The panel shows what the API counts for the same range.
  const params = new URL(page.url()).hash.split('?')[1]
  const api = await page.evaluate((q) => fetch(`/api/v1/insights/trend?${q}`).then((r) => r.json()), params)
  const apiTotal = api.series.reduce((a, x) => a + x.count, 0)
  assert.ok(apiTotal > 15000, `most of the 20000 events are in the last 30 days (${apiTotal})`)
  assert.equal((await panelInfo(page, 'p-events')).total, apiTotal)
  for (const prop of ['host_os_name', 'system_kernel_version', 'system_architecture', 'system_virtualization', 'system_container']) {
    const p = await panelInfo(page, `p-${prop}`)
    assert.equal(p.state, 'ready', prop)
    assert.ok(p.bars >= 2, `${prop} has bars`)
  }
  assert.equal(await kpiValue(page, 'kpi-events'), String(apiTotal))
  assert.ok(Number(await kpiValue(page, 'kpi-fatal')) > 0)
  // Rare operating systems are folded into a visible "other" bar that says why.
  const other = await page.$('#p-host_os_name .bar.other')
  assert.ok(other, 'an "other" bar')
  assert.match(await other.getAttribute('title'), /fewer than 5 machines/)
  await screenshot(page, 'dashboard-overview')
})

test('a filter changes the numbers, is kept in the URL and can be removed', { skip }, async () => {
  const before_ = Number(await kpiValue(page, 'kpi-events'))
  const activeBefore = (await panelInfo(page, 'p-active')).total
  await rerender(page, 'overview', () => page.click('#p-host_os_name .bar[data-value="Debian GNU/Linux"]'))
  assert.match(page.url(), /filter=host_os_name/)
  const after_ = Number(await kpiValue(page, 'kpi-events'))
  assert.ok(after_ > 0 && after_ < before_, `events ${after_} < ${before_} with the filter`)
  assert.ok((await panelInfo(page, 'p-active')).total < activeBefore)
  assert.equal((await panelInfo(page, 'p-events')).total, after_)
  const osBars = await page.$$eval('#p-host_os_name .bar', (els) => els.map((e) => e.dataset.value))
  assert.deepEqual(osBars, ['Debian GNU/Linux'])
  assert.match(await page.textContent('#filters'), /host_os_name=Debian GNU\/Linux/)
  await screenshot(page, 'dashboard-overview-filtered')

  // The URL is the view: a fresh tab on it shows the same numbers.
  const shared = await browser.context.newPage()
  await shared.goto(page.url())
  await waitReady(shared, 'overview')
  assert.equal(Number(await kpiValue(shared, 'kpi-events')), after_)
  await shared.close()

  // The typed form of a filter works too; removing the chips restores the totals.
  await rerender(page, 'overview', () => page.click('.chip-x'))
  assert.equal(Number(await kpiValue(page, 'kpi-events')), before_)
  await page.fill('#filter-input', 'system_architecture=aarch64')
  await rerender(page, 'overview', () => page.click('#filter-add'))
  assert.match(page.url(), /filter=system_architecture/)
  const arm = Number(await kpiValue(page, 'kpi-events'))
  assert.ok(arm > 0 && arm < before_)
  await rerender(page, 'overview', () => page.click('.chip-x'))
})

test('CI runs are left out of the numbers until the toggle includes them', { skip }, async () => {
  await openRoute(page, collector.url, '#/overview')
  const before_ = Number(await kpiValue(page, 'kpi-events'))
  const writeToken = execFileSync(ANONSTATS_BIN, ['keys', 'create-write-key', 'default', '--data-dir', collector.dataDir],
    { encoding: 'utf8' }).trim().split('\n').pop().trim()
  const batch = Array.from({ length: 40 }, (_, i) => ({
    event: 'START', distinct_id: `ci-runner-${i % 8}`, timestamp: new Date().toISOString(),
    properties: { product_version: 'v9.9.9-ci', is_ci: true },
  }))
  const res = await fetch(`${collector.url}/batch/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api_key: writeToken, batch }),
  })
  assert.equal(res.status, 200)
  await rerender(page, 'overview', () => page.reload())
  assert.equal(Number(await kpiValue(page, 'kpi-events')), before_, 'CI runs left out by default')
  assert.equal(await page.isChecked('#ci-include'), false)
  await rerender(page, 'overview', () => page.click('#ci-include'))
  assert.match(page.url(), /ci=include/)
  assert.equal(Number(await kpiValue(page, 'kpi-events')), before_ + 40)
  assert.equal(await page.isChecked('#ci-include'), true)
  await screenshot(page, 'dashboard-overview-ci-included')
  await rerender(page, 'overview', () => page.click('#ci-include'))
  assert.doesNotMatch(page.url(), /ci=include/)
  assert.equal(Number(await kpiValue(page, 'kpi-events')), before_)
})

test('a filter on a value seen on fewer than k machines shows each panel folded, with the reason', { skip }, async () => {
  // A second project holds one machine with an OS of its own.
  const out = execFileSync(ANONSTATS_BIN, ['keys', 'create-project', 'lonely', '--data-dir', collector.dataDir], { encoding: 'utf8' })
  const token = out.match(/aw_\S+/)?.[0]
  assert.ok(token, out)
  // The collector picks up the new token within a moment: send until it is known.
  const send = () => fetch(`${collector.url}/batch/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api_key: token, batch: [{ event: 'START', distinct_id: 'only-one', uuid: '01900000-0000-7000-8000-00000000f01d', properties: { host_os_name: 'Plan 9' } }] }),
  })
  let res = await send()
  for (const until = Date.now() + 10_000; res.status === 401 && Date.now() < until;) res = await send()
  assert.equal(res.status, 200)
  // A fresh tab, so that the project list holds the new project.
  const tab = await browser.context.newPage()
  await tab.goto(`${collector.url}/#/overview?project=lonely&filter=${encodeURIComponent('host_os_name=Plan 9')}`)
  await waitReady(tab, 'overview')
  const active = await panelInfo(tab, 'p-active')
  assert.equal(active.state, 'folded')
  assert.equal(active.canvases, 0, 'no numbers drawn')
  assert.equal(await tab.textContent('#p-active .folded-reason'),
    'the filter host_os_name=Plan 9 matches fewer than k=5 machines in this range')
  assert.match(await tab.textContent('#p-active .state.folded'), /Folded to keep fewer than 5 machines from standing out/)
  assert.equal((await panelInfo(tab, 'p-host_os_name')).state, 'folded')
  await screenshot(tab, 'dashboard-folded')
  await tab.close()
})

test('date range presets change the range', { skip }, async () => {
  await openRoute(page, collector.url, '#/overview?range=30')
  const month = Number(await kpiValue(page, 'kpi-events'))
  await rerender(page, 'overview', () => page.click('.seg[data-range="7"]'))
  assert.match(page.url(), /range=7/)
  const week = Number(await kpiValue(page, 'kpi-events'))
  assert.ok(week > 0 && week < month, `7 days ${week} < 30 days ${month}`)
  assert.ok((await panelInfo(page, 'p-events')).points <= 8)
  await rerender(page, 'overview', () => page.click('.seg[data-range="custom"]'))
  await page.waitForSelector('#from')
  assert.match(page.url(), /range=custom&from=\d{4}-\d\d-\d\d&to=\d{4}-\d\d-\d\d/)
  assert.equal(Number(await kpiValue(page, 'kpi-events')), week)
})

test('crashes: the top list, then one crash site with its breakdowns', { skip }, async () => {
  await openRoute(page, collector.url, '#/crashes?range=30')
  const top = await panelInfo(page, 'p-crash-sites')
  assert.equal(top.state, 'ready')
  assert.ok(top.rows >= 3, 'crash sites listed')
  const trend = await panelInfo(page, 'p-fatal-trend')
  assert.ok(trend.canvases > 0 && trend.total > 0)
  const first = await page.$$eval('#p-crash-sites tbody tr', (rows) => rows[0].innerText)
  assert.match(first, /\d/)
  await screenshot(page, 'dashboard-crashes')

  await rerender(page, 'crashes', () => page.click('#p-crash-sites tbody tr:first-child'))
  assert.match(page.url(), /function=/)
  assert.match(page.url(), /function=.+&file=.+&line=\d+/)
  const site = await panelInfo(page, 'p-site-trend')
  assert.equal(site.state, 'ready')
  assert.ok(site.canvases > 0 && site.total > 0 && site.total < trend.total)
  assert.match(await page.textContent('#crash-site'), /fatal_function=/)
  for (const id of ['p-site-versions', 'p-site-os']) {
    const p = await panelInfo(page, id)
    assert.equal(p.state, 'ready', id)
    assert.ok(p.bars >= 1, `${id} bars`)
  }
  await screenshot(page, 'dashboard-crash-site')
})

test('cloud: failures per event and by error code', { skip }, async () => {
  await openRoute(page, collector.url, '#/cloud?range=30')
  for (const id of ['p-cloud-events', 'p-cloud-codes']) {
    const p = await panelInfo(page, id)
    assert.equal(p.state, 'ready', id)
    assert.ok(p.canvases > 0 && p.points >= 30, `${id} chart`)
  }
  assert.ok((await panelInfo(page, 'p-cloud-events')).total > 0)
  assert.ok((await panelInfo(page, 'p-cloud_connect_fail')).bars >= 2)
  await screenshot(page, 'dashboard-cloud')
})

test('live: the newest events, a new one appears, properties expand', { skip }, async () => {
  await openRoute(page, collector.url, '#/live')
  const p = await panelInfo(page, 'p-live')
  assert.equal(p.state, 'ready')
  assert.ok(p.rows > 10)
  const writeToken = execFileSync(ANONSTATS_BIN, ['keys', 'create-write-key', 'default', '--data-dir', collector.dataDir],
    { encoding: 'utf8' }).trim().split('\n').pop().trim()
  const res = await fetch(`${collector.url}/batch/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api_key: writeToken, batch: [{ event: 'LIVE_CHECK', distinct_id: 'live-machine', properties: { product_version: 'v9.9.9' } }] }),
  })
  assert.equal(res.status, 200)
  await page.waitForSelector('#p-live tr.clickable:has-text("LIVE_CHECK")', { timeout: 15_000 })
  await page.click('#p-live tr.clickable:has-text("LIVE_CHECK")')
  const props = page.locator('#p-live tr.props-row:not([hidden])')
  await props.waitFor()
  assert.match(await props.innerText(), /product_version\s+v9\.9\.9/)
  await screenshot(page, 'dashboard-live')
})

test('data: properties with examples, and SQL results or errors', { skip }, async () => {
  await openRoute(page, collector.url, '#/data')
  const props = await panelInfo(page, 'p-properties')
  assert.equal(props.state, 'ready')
  assert.ok(props.rows >= 10, 'properties listed')
  assert.match(await page.textContent('#p-properties'), /host_os_name/)
  await page.click('#sql-run')
  await page.waitForSelector('#sql-out tbody tr')
  const rows = await page.$$eval('#sql-out tbody tr', (r) => r.map((x) => x.innerText))
  assert.ok(rows.some((r) => r.startsWith('START')), 'SQL result rows')
  await screenshot(page, 'dashboard-data')
  await page.fill('#sql', 'DELETE FROM events')
  await page.click('#sql-run')
  await page.waitForSelector('#sql-out .state.error')
  assert.match(await page.textContent('#sql-out'), /The query failed/)
})

test('log-out ends the session', { skip }, async () => {
  await openRoute(page, collector.url, '#/overview')
  await page.click('#logout')
  await page.waitForSelector('#login-error:has-text("logged out")')
  assert.equal(await sessionCookie(), undefined)
  const status = await page.evaluate(() => fetch('/api/v1/projects').then((r) => r.status))
  assert.equal(status, 401)
})

test('a viewer sees the insights but neither the Live page nor SQL', { skip }, async () => {
  const viewer = execFileSync(ANONSTATS_BIN, ['keys', 'create-viewer', '--data-dir', collector.dataDir],
    { encoding: 'utf8' }).trim().split('\n').pop().trim()
  await logIn(page, collector.url, viewer)
  assert.equal(await page.textContent('#role'), 'viewer')
  assert.ok((await panelInfo(page, 'p-active')).total > 100, 'the insights are there')
  const tabs = await page.$$eval('nav.tabs .tab', (els) => els.map((e) => e.dataset.page))
  assert.deepEqual(tabs, ['overview', 'crashes', 'cloud', 'data'])
  await openRoute(page, collector.url, '#/data')
  assert.equal((await panelInfo(page, 'p-properties')).state, 'ready')
  assert.equal(await page.$('#p-sql'), null, 'no SQL box')
  await openRoute(page, collector.url, '#/live')
  assert.match(await page.textContent('#view'), /needs an admin token/)
  assert.equal(await page.$('#p-live'), null)
  // What the page hides, the collector refuses: the session carries the viewer's role.
  const sql = await page.evaluate(() => fetch('/api/v1/sql', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT 1' }),
  }).then(async (r) => ({ status: r.status, body: await r.json() })))
  assert.equal(sql.status, 403)
  assert.match(sql.body.detail, /viewer's credential/)
  await screenshot(page, 'dashboard-viewer-live')
  await page.click('#logout')
  await page.waitForSelector('#login-error:has-text("logged out")')
})

test('an empty collector shows empty states, not errors', { skip }, async () => {
  const empty = await startCollector()
  try {
    const admin = execFileSync(ANONSTATS_BIN, ['keys', 'create-admin', '--data-dir', empty.dataDir],
      { encoding: 'utf8' }).trim().split('\n').pop().trim()
    await logIn(page, empty.url, admin)
    for (const id of ['p-active', 'p-events', 'p-versions', 'p-host_os_name']) {
      assert.equal((await panelInfo(page, id)).state, 'empty', id)
    }
    assert.match(await page.textContent('#p-events'), /No events in this range/)
    await openRoute(page, empty.url, '#/crashes')
    assert.equal((await panelInfo(page, 'p-crash-sites')).state, 'empty')
    await openRoute(page, empty.url, '#/live')
    assert.match(await page.textContent('#p-live'), /No events yet/)
    await openRoute(page, empty.url, '#/overview?project=nope')
    assert.match(await page.textContent('#view'), /No project named/)
    await screenshot(page, 'dashboard-empty')
  } finally {
    await empty.stop()
  }
})

test('no script error and no Content-Security-Policy violation on any page', { skip }, () => {
  assert.deepEqual(pageErrors, [])
})
