// The demo agent's dashboard in headless Chromium against the real collector: with
// statistics on, clicks arrive masked; with each opt-out of the agent, the browser makes no
// request to the collector, stores nothing, and the collector stores nothing.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  ANONSTATS_BIN, skipReason, startCollector, startAgent, launchBrowser, storageOf, NO_STORAGE,
  screenshot, tempDir, sleep,
} from '../lib.mjs'

const skip = skipReason()
const BUTTONS = ['#refresh', '#zoom', '#theme']
// A real-looking location that must never reach the collector.
const PAGE_PATH = '/nodes/secret-node-42/overview?room=secret-room#chart-secret-cpu'
const SECRETS = ['secret-node-42', 'secret-room', 'chart-secret-cpu', '/nodes/', 'HeadlessChrome',
  'Linux x86_64']

let collector
before(async () => { if (!skip) collector = await startCollector() })
after(async () => { await collector?.stop() })

function agentDirs() {
  const root = tempDir('agent')
  const configDir = join(root, 'etc')
  const stateDir = join(root, 'state')
  mkdirSync(configDir, { recursive: true })
  return { configDir, stateDir }
}

test('statistics on: the clicks arrive masked, without the page location or the browser address',
  { skip }, async () => {
    const dirs = agentDirs()
    const agent = await startAgent({ collector, ...dirs })
    const browser = await launchBrowser()
    try {
      const page = await browser.context.newPage()
      const pageUrl = new URL(PAGE_PATH, agent.url).href
      await page.goto(pageUrl)
      assert.equal(await page.evaluate(() => window.dashboardReady), true)
      const info = await page.evaluate(() => fetch('/api/v1/info').then((r) => r.json()))
      assert.equal(info.anonymous_statistics, true)
      for (const b of BUTTONS) await page.click(b)
      await screenshot(page, 'dashboard-statistics-on')
      // The batch goes out on its 2 s timer; one more click leaves with the page (beacon).
      await sleep(2500)
      await page.click('#zoom')
      assert.deepEqual(await storageOf(page, browser.context), NO_STORAGE)
      await page.goto('about:blank')

      const events = await collector.waitForEvents(
        (ev) => ev.filter((e) => e.event === 'dashboard_click').length >= 4)
      const mine = events.filter((e) => e.distinct_id === info.machine_guid &&
        e.event.startsWith('dashboard_'))
      const clicks = mine.filter((e) => e.event === 'dashboard_click')
      assert.deepEqual(clicks.map((e) => e.properties.button).sort(),
        ['refresh_charts', 'toggle_theme', 'zoom_chart', 'zoom_chart'])
      assert.equal(mine.filter((e) => e.event === 'dashboard_open').length, 1)
      for (const e of mine) {
        const p = e.properties
        assert.equal(p.$current_url, 'agent dashboard')
        assert.equal(p.$pathname, 'anonstats-dashboard')
        assert.equal(p.$host, 'dashboard.anonstats.invalid')
        assert.equal(p.$ip, undefined)
        assert.equal(p.$browser, 'Chrome')
        assert.equal(p.$lib, 'anonstats.js')
        assert.equal(p.product_version, info.version)
        const text = JSON.stringify(e)
        const host = new URL(agent.url).host
        for (const s of [...SECRETS, host, pageUrl, '127.0.0.1'])
          assert.ok(!text.includes(s), `stored event contains ${s}: ${text}`)
      }
      const toCollector = browser.requests.filter((r) => r.url().startsWith(collector.origin))
      // (Playwright does not report the beacon sent while the page unloads; the fourth
      // click above arriving shows it.)
      assert.ok(toCollector.length >= 1)
      for (const r of toCollector) {
        assert.equal(r.method(), 'POST')
        assert.match(r.url(), /\/batch\/(\?compression=gzip-js)?$/)
        assert.equal(r.headers().cookie, undefined)
        assert.ok(!r.headers().referer, r.headers().referer)
      }
      // anonstats.js came from the agent, not from the collector.
      assert.ok(browser.requests.some((r) => r.url() === `${agent.url}/anonstats.js`))
    } finally {
      await browser.close()
      await agent.stop()
    }
  })

const OPT_OUTS = {
  DISABLE_TELEMETRY: { env: { DISABLE_TELEMETRY: '1' } },
  'DISABLE_TELEMETRY=0 (any non-empty value)': { env: { DISABLE_TELEMETRY: '0' } },
  DO_NOT_TRACK: { env: { DO_NOT_TRACK: '1' } },
  'opt-out file': {
    prepare: ({ configDir }) =>
      writeFileSync(join(configDir, '.opt-out-from-anonymous-statistics'), ''),
  },
  'anonstats opt-out --config-dir': {
    prepare: ({ configDir }) =>
      execFileSync(ANONSTATS_BIN, ['opt-out', '--config-dir', configDir], { stdio: 'pipe' }),
  },
  'host setting --mode off': { mode: 'off' },
  'level --mode crashes': {
    mode: 'crashes',
    title: 'level crashes (crash reports only): no dashboard usage, no request to the collector, nothing stored',
  },
}

for (const [name, how] of Object.entries(OPT_OUTS)) {
  test(how.title ?? `opted out by ${name}: no request to the collector, no storage, nothing stored`,
    { skip }, async () => {
      const dirs = agentDirs()
      how.prepare?.(dirs)
      const storedBefore = collector.exportEvents().length
      const requestsBefore = await collector.captureRequests()
      const agent = await startAgent({ collector, env: how.env, mode: how.mode, ...dirs })
      const browser = await launchBrowser()
      try {
        const page = await browser.context.newPage()
        await page.goto(new URL(PAGE_PATH, agent.url).href)
        assert.equal(await page.evaluate(() => window.dashboardReady), false)
        const info = await page.evaluate(() => fetch('/api/v1/info').then((r) => r.json()))
        assert.equal(info.anonymous_statistics, false)
        assert.equal(info.token, null)
        for (const b of BUTTONS) await page.click(b)
        assert.equal(await page.textContent('#stats'), 'anonymous statistics: off')
        await sleep(2500)
        assert.deepEqual(await storageOf(page, browser.context), NO_STORAGE)
        await screenshot(page, `dashboard-opt-out-${name.replace(/[^a-zA-Z0-9]+/g, '-')}`)
        await page.goto('about:blank') // pagehide: the beacon path stays silent too
        await sleep(300)
        const toCollector = browser.requests.map((r) => r.url())
          .filter((u) => u.startsWith(collector.origin))
        assert.deepEqual(toCollector, [])
        // The collector's own count sees beacons too: not one capture request came.
        assert.equal(await collector.captureRequests(), requestsBefore)
        assert.equal(collector.exportEvents().length, storedBefore)
      } finally {
        await browser.close()
        await agent.stop()
      }
    })
}
