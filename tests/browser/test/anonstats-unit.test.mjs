// Unit tests of web/anonstats.js in node, with fetch stubbed: property precedence, masks,
// batching, compression, retry, consent. No browser and no collector needed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gunzipSync } from 'node:zlib'
import { execFileSync } from 'node:child_process'
import { create, MASKS, browserFamily } from '../../../web/anonstats.js'

const API = 'http://collector.test'

/** A fetch stub that records every call and answers with `answer(url, n)`. */
function stubFetch(answer = () => new Response('{"status":1}')) {
  const calls = []
  globalThis.fetch = async (url, init = {}) => {
    calls.push({ url: String(url), init })
    return answer(String(url), calls.length)
  }
  return calls
}

function decode(call) {
  const b = call.init.body
  const text = typeof b === 'string' ? b : gunzipSync(Buffer.from(b)).toString('utf8')
  return JSON.parse(text)
}

const opts = (o) => ({ apiHost: API, token: 'aw_test', distinctId: 'guid-1', flushAt: 100,
  flushInterval: 60_000, retryDelay: 1, compress: false, ...o })

test('event properties override super properties; later register overrides earlier', async () => {
  const calls = stubFetch()
  const a = create()
  await a.init(opts({ properties: { product_version: '1.0', channel: 'stable', keep: 'init' } }))
  a.register({ channel: 'nightly', theme: 'dark' })
  a.register({ theme: 'light' })
  a.capture('click', { theme: 'event', button: 'save' })
  await a.flush()
  const [e] = decode(calls[0]).batch
  assert.equal(e.event, 'click')
  assert.equal(e.distinct_id, 'guid-1')
  assert.equal(e.properties.product_version, '1.0')
  assert.equal(e.properties.keep, 'init')
  assert.equal(e.properties.channel, 'nightly')
  assert.equal(e.properties.theme, 'event')
  assert.equal(e.properties.button, 'save')
  assert.equal(e.properties.$lib, 'anonstats.js')
})

test('masks replace location and address whatever the page or caller says', async () => {
  const calls = stubFetch()
  const a = create()
  await a.init(opts())
  a.register({ $current_url: 'http://10.0.0.5:19999/#cpu', $host: '10.0.0.5:19999' })
  a.capture('click', { $pathname: '/secret/path', $ip: '192.0.2.1' })
  await a.flush()
  const { properties: p } = decode(calls[0]).batch[0]
  for (const [k, v] of Object.entries(MASKS)) assert.equal(p[k], v, k)
  assert.deepEqual(MASKS, { $ip: '127.0.0.1', $current_url: 'agent dashboard',
    $pathname: 'anonstats-dashboard', $host: 'dashboard.anonstats.invalid' })
  for (const k of ['$referrer', '$title', '$screen_width', '$user_agent', '$os'])
    assert.equal(p[k], undefined, k)
  const custom = create()
  await custom.init(opts({ masks: { $pathname: 'netdata-dashboard' } }))
  custom.capture('x')
  await custom.flush()
  assert.equal(decode(calls[1]).batch[0].properties.$pathname, 'netdata-dashboard')
  assert.equal(decode(calls[1]).batch[0].properties.$host, MASKS.$host)
})

test('batches: one request per flushAt events, the rest after the interval', async () => {
  const calls = stubFetch()
  const a = create()
  await a.init(opts({ flushAt: 3, flushInterval: 50 }))
  for (let i = 0; i < 7; i++) a.capture(`e${i}`)
  await new Promise((r) => setTimeout(r, 20))
  assert.equal(calls.length, 2)
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(calls.length, 3)
  const sizes = calls.map((c) => decode(c).batch.length)
  assert.deepEqual(sizes, [3, 3, 1])
  const all = calls.flatMap((c) => decode(c).batch)
  assert.deepEqual(all.map((e) => e.event), ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6'])
  assert.equal(new Set(all.map((e) => e.uuid)).size, 7)
  for (const e of all) {
    assert.match(e.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.ok(Math.abs(Date.parse(e.timestamp) - Date.now()) < 5000)
  }
  for (const c of calls) {
    assert.equal(c.url, `${API}/batch/`)
    assert.equal(c.init.method, 'POST')
    assert.equal(c.init.credentials, 'omit')
    assert.equal(c.init.referrerPolicy, 'no-referrer')
    assert.equal(decode(c).api_key, 'aw_test')
  }
})

test('gzips with CompressionStream and says so in the query', async () => {
  const calls = stubFetch()
  const a = create()
  await a.init(opts({ compress: true }))
  a.capture('zipped', { n: 1 })
  await a.flush()
  assert.equal(calls[0].url, `${API}/batch/?compression=gzip-js`)
  const bytes = Buffer.from(calls[0].init.body)
  assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b])
  assert.equal(decode(calls[0]).batch[0].event, 'zipped')
})

test('retries once after a network error or a 5xx, never more; not after a 4xx', async () => {
  let calls = stubFetch(() => { throw new TypeError('network down') })
  const a = create()
  await a.init(opts())
  a.capture('x')
  assert.equal(await a.flush(), false)
  assert.equal(calls.length, 2)
  assert.equal(decode(calls[0]).batch[0].uuid, decode(calls[1]).batch[0].uuid)

  calls = stubFetch((_, n) => new Response('{}', { status: n === 1 ? 503 : 200 }))
  a.capture('y')
  assert.equal(await a.flush(), true)
  assert.equal(calls.length, 2)

  calls = stubFetch(() => new Response('{"detail":"unknown token"}', { status: 401 }))
  a.capture('z')
  assert.equal(await a.flush(), false)
  assert.equal(calls.length, 1)
})

test('enabled: false sends nothing, ever', async () => {
  const calls = stubFetch()
  const a = create()
  a.capture('before')
  assert.equal(await a.init(opts({ enabled: false, flushAt: 1 })), false)
  a.register({ x: 1 })
  a.capture('after')
  await a.flush()
  await a.flush(true)
  assert.equal(calls.length, 0)
  assert.equal(a.enabled(), false)
})

test('consentUrl: only an explicit true enables; no, an error or garbage disable', async () => {
  const cases = [
    [() => Response.json({ anonymous_statistics: false }), false],
    [() => Response.json({ anonymous_statistics: 'true' }), false],
    [() => Response.json({}), false],
    [() => new Response('oops', { status: 500 }), false],
    [() => new Response('not json'), false],
    [() => { throw new TypeError('refused') }, false],
    [() => Response.json({ anonymous_statistics: true }), true],
  ]
  for (const [consent, expected] of cases) {
    const calls = stubFetch((url) => (url === '/api/v1/info' ? consent() : new Response('{}')))
    const a = create()
    a.capture('early') // captured while consent is unknown
    assert.equal(await a.init(opts({ consentUrl: '/api/v1/info' })), expected)
    a.capture('late')
    await a.flush()
    const toCollector = calls.filter((c) => c.url.startsWith(API))
    assert.equal(calls[0].url, '/api/v1/info')
    if (!expected) assert.equal(toCollector.length, 0, String(consent))
    else assert.deepEqual(decode(toCollector[0]).batch.map((e) => e.event), ['early', 'late'])
  }
})

test('browser family is coarse', () => {
  const ua = {
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36': 'Chrome',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0': 'Edge',
    'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0': 'Firefox',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15': 'Safari',
    'curl/8.0': 'Other',
    '': 'Other',
  }
  for (const [s, family] of Object.entries(ua)) assert.equal(browserFamily(s), family, s)
})

test('web/dist is built from web/anonstats.js', () => {
  execFileSync(process.execPath, [new URL('../build.mjs', import.meta.url).pathname, '--check'],
    { stdio: 'pipe' })
})
