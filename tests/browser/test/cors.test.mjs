// Cross-origin use of the collector from a page served on another port: the capture
// endpoints answer preflights and simple requests; the admin API and operations endpoints
// give a browser on another origin nothing. Also /static/anonstats.js loaded cross-origin,
// as a plain script and as an ES module, with its consentUrl deciding.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { skipReason, startCollector, launchBrowser, servePages, storageOf, NO_STORAGE,
  screenshot, sleep } from '../lib.mjs'

const skip = skipReason()
const CAPTURE = ['/e/', '/i/v0/e/', '/capture/', '/track/', '/engage/', '/batch/', '/e', '/batch']
const FLAGS = ['/decide/', '/flags/']
const ADMIN = ['/api/v1/openapi.json', '/api/v1/projects', '/api/v1/events/recent',
  '/api/v1/insights/trend']
const NOT_FOR_BROWSERS = [...ADMIN, '/metrics']

let collector
let pages
before(async () => {
  if (skip) return
  collector = await startCollector()
  const withScript = (consent) => `<!doctype html><title>anonstats.js from the collector</title>
    <h1>anonstats.js loaded from the collector</h1><p id="state">loading</p>
    <script src="${collector.url}/static/anonstats.js"></script>
    <script>
      window.ready = anonstats.init({ apiHost: ${JSON.stringify(collector.url)},
        token: ${JSON.stringify(collector.token)}, consentUrl: '${consent}',
        distinctId: 'cors-page', flushAt: 2 })
      anonstats.capture('static_script', { n: 1 })
      anonstats.capture('static_script', { n: 2 })
      window.ready.then((on) => { document.getElementById('state').textContent = 'on: ' + on })
    </script>`
  pages = await servePages({
    '/': '<!doctype html><title>another origin</title><p>another origin</p>',
    '/script-on': withScript('/consent-yes'),
    '/script-off': withScript('/consent-no'),
    '/script-broken': withScript('/no-such-consent'),
    '/consent-yes': '{"anonymous_statistics": true}',
    '/consent-no': '{"anonymous_statistics": false}',
  })
})
after(async () => {
  await pages?.close()
  await collector?.stop()
})

const event = (name) => ({ event: name, distinct_id: 'cors-test', properties: { via: name } })

test('capture endpoints: preflighted and simple cross-origin requests succeed', { skip },
  async () => {
    const browser = await launchBrowser()
    try {
      const page = await browser.context.newPage()
      await page.goto(pages.url + '/')
      const results = await page.evaluate(async ([base, token, paths, flags]) => {
        const out = {}
        for (const p of paths) {
          for (const [kind, type] of [['preflight', 'application/json'], ['simple', 'text/plain']]) {
            const body = JSON.stringify({ api_key: token, batch: [{ event: `cors ${kind} ${p}`,
              distinct_id: 'cors-test', properties: { via: p } }] })
            try {
              const r = await fetch(base + p, { method: 'POST', headers: { 'content-type': type },
                body })
              out[`${kind} POST ${p}`] = `${r.status} ${await r.text()}`
            } catch (e) {
              out[`${kind} POST ${p}`] = `failed: ${e}`
            }
          }
        }
        for (const p of flags) {
          const r = await fetch(base + p + '?v=3', { method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ token, distinct_id: 'cors-test' }) })
          out[`POST ${p}`] = `${r.status} ${(await r.json()).featureFlags ? 'flags' : '?'}`
        }
        return out
      }, [collector.url, collector.token, CAPTURE, FLAGS])
      for (const [what, result] of Object.entries(results)) {
        if (what.startsWith('POST /'))
          assert.equal(result, '200 flags', what)
        else
          assert.equal(result, '200 {"status":1}', what)
      }
      const stored = collector.exportEvents().filter((e) => e.event.startsWith('cors '))
      assert.equal(stored.length, CAPTURE.length * 2)
    } finally {
      await browser.close()
    }
  })

test('capture preflight answers with the page origin and the asked-for headers', { skip },
  async () => {
    for (const p of [...CAPTURE, ...FLAGS]) {
      const r = await fetch(collector.url + p, { method: 'OPTIONS', headers: {
        origin: pages.url, 'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type' } })
      assert.ok(r.ok, `${p}: ${r.status}`)
      assert.equal(r.headers.get('access-control-allow-origin'), pages.url, p)
      assert.match(r.headers.get('access-control-allow-methods') || '', /POST/, p)
      assert.match(r.headers.get('access-control-allow-headers') || '', /content-type/i, p)
    }
  })

test('admin API and operations: a page on another origin cannot read them', { skip },
  async () => {
    const browser = await launchBrowser()
    try {
      const page = await browser.context.newPage()
      await page.goto(pages.url + '/')
      const results = await page.evaluate(async ([base, paths, admin]) => {
        const out = {}
        for (const p of paths) {
          for (const [kind, init] of [
            ['plain GET', {}],
            ['Bearer GET (the real admin token)', { headers: { authorization: `Bearer ${admin}` } }],
            ['credentialed GET', { credentials: 'include' }],
          ]) {
            try {
              const r = await fetch(base + p, init)
              out[`${kind} ${p}`] = `readable: ${r.status}`
            } catch (e) {
              out[`${kind} ${p}`] = 'blocked'
            }
          }
        }
        return out
      }, [collector.url, NOT_FOR_BROWSERS, collector.adminToken])
      for (const [what, result] of Object.entries(results)) assert.equal(result, 'blocked', what)
    } finally {
      await browser.close()
    }
    // The API is there: the same request without a browser's CORS check is answered.
    const direct = await fetch(collector.url + '/api/v1/projects',
      { headers: { authorization: `Bearer ${collector.adminToken}` } })
    assert.equal(direct.status, 200)
    // The same seen from the wire: no Access-Control-Allow-Origin, preflight or not.
    for (const p of NOT_FOR_BROWSERS) {
      const get = await fetch(collector.url + p, { headers: { origin: pages.url } })
      assert.equal(get.headers.get('access-control-allow-origin'), null, `GET ${p}`)
      const pre = await fetch(collector.url + p, { method: 'OPTIONS', headers: {
        origin: pages.url, 'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization' } })
      assert.equal(pre.headers.get('access-control-allow-origin'), null, `OPTIONS ${p}`)
      assert.equal(pre.headers.get('access-control-allow-headers'), null, `OPTIONS ${p}`)
    }
  })

// The page's origin (another port of 127.0.0.1) is the same site as the collector, so the
// browser sends and accepts its SameSite=Strict cookie; only the Content-Type rule stops it.
test('a page on a sibling origin cannot log the browser in or write with its session', { skip },
  async () => {
    const browser = await launchBrowser()
    try {
      const page = await browser.context.newPage()
      await page.goto(pages.url + '/')
      const sessions = async () => (await browser.context.cookies(collector.url))
        .filter((c) => c.name === 'anonstats_session')
      // What a form or a no-cors fetch may send unasked: no preflight, cookies included.
      const forged = await page.evaluate(async ([base, admin]) => {
        const out = []
        for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
          for (const [path, body] of [['/api/v1/session', { token: admin }],
            ['/api/v1/sql', { sql: 'SELECT 1' }]]) {
            const r = await fetch(base + path, { method: 'POST', mode: 'no-cors',
              credentials: 'include', headers: { 'content-type': type },
              body: JSON.stringify(body) })
            out.push(`${path} ${type}: ${r.type}`)
          }
        }
        return out
      }, [collector.url, collector.adminToken])
      assert.equal(forged.length, 4)
      assert.deepEqual(await sessions(), [], 'no session was opened by the forged log-in')
      // The same, with the JSON Content-Type, needs a preflight the admin API refuses.
      const json = await page.evaluate(async ([base, admin]) => {
        try {
          await fetch(base + '/api/v1/session', { method: 'POST', credentials: 'include',
            headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: admin }) })
          return 'sent'
        } catch {
          return 'blocked'
        }
      }, [collector.url, collector.adminToken])
      assert.equal(json, 'blocked')
      assert.deepEqual(await sessions(), [])
      // A real log-in, on the collector's own page, does open one.
      await page.goto(collector.url + '/')
      const ok = await page.evaluate(async (admin) => (await fetch('/api/v1/session', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: admin }) })).status, collector.adminToken)
      assert.equal(ok, 200)
      assert.equal((await sessions()).length, 1)
    } finally {
      await browser.close()
    }
  })

test('/static/anonstats.js and .mjs load cross-origin with a JavaScript type and a cache header',
  { skip }, async () => {
    for (const [p, marker] of [['/static/anonstats.js', 'var anonstats='],
      ['/static/anonstats.mjs', 'export{']]) {
      const r = await fetch(collector.url + p, { headers: { origin: pages.url } })
      assert.equal(r.status, 200)
      assert.match(r.headers.get('content-type'), /^text\/javascript/)
      assert.match(r.headers.get('cache-control'), /max-age=\d+/)
      assert.equal(r.headers.get('access-control-allow-origin'), '*')
      assert.ok((await r.text()).includes(marker), p)
    }
    const browser = await launchBrowser()
    try {
      const page = await browser.context.newPage()
      await page.goto(pages.url + '/')
      const exported = await page.evaluate(async (u) =>
        Object.keys(await import(u + '/static/anonstats.mjs')).sort(), collector.url)
      for (const name of ['init', 'capture', 'register', 'flush', 'MASKS'])
        assert.ok(exported.includes(name), name)
    } finally {
      await browser.close()
    }
  })

for (const [path, on] of [['/script-on', true], ['/script-off', false], ['/script-broken', false]]) {
  test(`script from the collector, consentUrl ${path.slice(8)}: ${on ? 'sends' : 'sends nothing'}`,
    { skip }, async () => {
      const browser = await launchBrowser()
      const before = await collector.captureRequests()
      try {
        const page = await browser.context.newPage()
        await page.goto(pages.url + path)
        assert.equal(await page.evaluate(() => window.ready), on)
        await sleep(on ? 500 : 2500)
        await screenshot(page, `static-script-${path.slice(1)}`)
        assert.deepEqual(await storageOf(page, browser.context), NO_STORAGE)
        await page.goto('about:blank')
        await sleep(300)
        const toCollector = browser.requests.map((r) => new URL(r.url()))
          .filter((u) => u.origin === collector.origin).map((u) => u.pathname)
        if (on) {
          const events = await collector.waitForEvents((ev) =>
            ev.filter((e) => e.event === 'static_script').length >= 2)
          const mine = events.filter((e) => e.event === 'static_script')
          assert.deepEqual(mine.map((e) => e.properties.n).sort(), [1, 2])
          assert.equal(mine[0].properties.$pathname, 'anonstats-dashboard')
          assert.deepEqual(toCollector, ['/static/anonstats.js', '/batch/'])
        } else {
          assert.deepEqual(toCollector, ['/static/anonstats.js'])
          assert.equal(await collector.captureRequests(), before)
        }
      } finally {
        await browser.close()
      }
    })
}
