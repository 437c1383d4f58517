// Stock posthog-js from npm, on a page of another origin, with api_host = the collector:
// init (/flags or /decide), capture, batching, the unload beacon, and every compression it
// can choose. posthog-js picks its compression from the server: current releases from the
// remote config (`/array/<token>/config`, `supportedCompression`: gzip-js, else base64, else
// none; `disable_compression` forces none), releases before lz64 was removed (mid 2023) from
// `/decide` (gzip-js, else lz64, else base64). The tests answer those with the mode wanted.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import {
  ROOT, skipReason, startCollector, launchBrowser, servePages, storageOf, screenshot, sleep,
} from '../lib.mjs'

const skip = skipReason()
const modules = join(ROOT, 'tests/browser/node_modules')
const CURRENT = join(modules, 'posthog-js/dist/array.full.js')
const LEGACY = join(modules, 'posthog-js-legacy/dist/array.full.js')

const PAGE = `<!doctype html><title>posthog-js test page</title>
<h1>posthog-js against anonstats</h1><button id="go">go</button>
<script src="posthog.js"></script>`

let collector
let pages
before(async () => {
  if (skip) return
  collector = await startCollector()
  pages = await servePages({ '/': PAGE, '/posthog.js': CURRENT, '/legacy/': PAGE,
    '/legacy/posthog.js': LEGACY })
})
after(async () => {
  await pages?.close()
  await collector?.stop()
})

/** The compression a capture request used, read from its URL and body as the server would. */
function compressionOf(req) {
  const body = req.postDataBuffer() || Buffer.alloc(0)
  const url = new URL(req.url())
  if (body[0] === 0x1f && body[1] === 0x8b) return 'gzip-js'
  const text = body.toString('latin1')
  const form = new URLSearchParams(text.startsWith('data=') ? text : '')
  const named = url.searchParams.get('compression') || form.get('compression')
  if (named) return named
  if (/^\s*[[{]/.test(text)) return 'none'
  if (form.get('data') && /^(W|e)/.test(form.get('data'))) return 'base64'
  return `unknown (${text.slice(0, 20)})`
}

const CASES = [
  { name: 'posthog-js 1.449.2, gzip-js', path: '/', remoteConfig: ['gzip-js'], want: 'gzip-js' },
  { name: 'posthog-js 1.449.2, base64', path: '/', remoteConfig: ['base64'], want: 'base64' },
  { name: 'posthog-js 1.449.2, uncompressed (disable_compression)', path: '/',
    remoteConfig: ['gzip-js'], config: { disable_compression: true }, want: 'none' },
  { name: 'posthog-js 1.449.2, the collector\'s own remote config (gzip-js chosen by itself)',
    path: '/', want: 'gzip-js' },
  { name: 'posthog-js 1.57.2, lz64', path: '/legacy/', decide: ['lz64'], want: 'lz64' },
  { name: 'posthog-js 1.57.2, gzip-js (the collector\'s own /decide answer)', path: '/legacy/',
    want: 'gzip-js' },
  { name: 'posthog-js 1.57.2, base64', path: '/legacy/', decide: [], want: 'base64' },
]

const cors = { 'access-control-allow-origin': '*' }

for (const c of CASES) {
  test(`${c.name}: init, batched capture and the unload beacon reach the store`, { skip },
    async () => {
      const browser = await launchBrowser()
      const { context, requests } = browser
      try {
        if (c.remoteConfig) {
          await context.route(/\/array\/[^/]+\/config(\.js)?(\?.*)?$/, (route) =>
            route.request().url().includes('config.js')
              ? route.fulfill({ status: 404, headers: cors, body: '' })
              : route.fulfill({ status: 200, headers: cors, contentType: 'application/json',
                body: JSON.stringify({ supportedCompression: c.remoteConfig }) }))
        }
        if (c.decide) {
          await context.route(/\/decide\/?(\?.*)?$/, async (route) => {
            const real = await route.fetch()
            const json = { ...(await real.json()), supportedCompression: c.decide }
            await route.fulfill({ response: real, json })
          })
        }
        const page = await context.newPage()
        await page.goto(pages.url + c.path)
        const run = `${c.want}-${Math.random().toString(36).slice(2)}`
        await page.evaluate(([apiHost, token, config, run]) => {
          window.posthog.init(token, {
            api_host: apiHost,
            autocapture: false,
            capture_pageview: false,
            disable_session_recording: true,
            persistence: 'memory',
            opt_out_useragent_filter: true, // headless Chromium would count as a bot
            request_queue_config: { flush_interval_ms: 500 },
            ...config,
          })
          window.posthog.register({ run })
          for (let i = 0; i < 5; i++) window.posthog.capture('ph_batched', { i })
        }, [collector.url, collector.token, c.config || {}, run])
        // The batch goes out on the queue's timer (1.57.2 has a fixed 3 s one).
        await sleep(c.path === '/' ? 1500 : 3500)
        // On unload posthog-js sends what is left with sendBeacon.
        await page.evaluate(() => window.posthog.capture('ph_unload'))
        await screenshot(page, `posthog-js-${c.want}-${c.path === '/' ? 'current' : 'legacy'}`)
        const storage = await storageOf(page, context)
        await page.goto('about:blank')

        const events = await collector.waitForEvents(
          (ev) => ev.filter((e) => e.properties.run === run).length >= 6)
        const mine = events.filter((e) => e.properties.run === run)
        assert.deepEqual(mine.filter((e) => e.event === 'ph_batched').map((e) => e.properties.i)
          .sort(), [0, 1, 2, 3, 4])
        assert.equal(mine.filter((e) => e.event === 'ph_unload').length, 1)
        for (const e of mine) {
          assert.equal(e.properties.$ip, undefined)
          assert.equal(e.properties.$current_url, 'masked')
          assert.equal(e.properties.$host, 'masked')
          assert.ok(!JSON.stringify(e).includes(pages.url), 'page URL stored')
        }

        const flagCalls = requests.filter((r) => /\/(decide|flags)\/?(\?|$)/.test(new URL(r.url()).pathname + '?'))
        assert.ok(flagCalls.length >= 1, 'posthog-js asked /flags or /decide')
        for (const r of flagCalls) assert.equal((await r.response())?.status(), 200, r.url())
        const captures = requests.filter((r) => r.method() === 'POST' &&
          r.url().startsWith(collector.origin) && /\/(e|batch|i\/v0\/e)\/?(\?|$)/.test(new URL(r.url()).pathname + '?'))
        assert.ok(captures.length >= 1 && captures.length < 5,
          `5 events batched into ${captures.length} requests`)
        for (const r of captures) {
          assert.equal(compressionOf(r), c.want, r.url())
          assert.equal((await r.response())?.status(), 200, r.url())
        }
        // posthog-js in memory persistence stores nothing either (a property of the config,
        // noted here because a dashboard using it should choose it).
        assert.equal(storage.contextCookies, 0)
      } finally {
        await browser.close()
      }
    })
}
