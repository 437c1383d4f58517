// anonstats.js: anonymous usage statistics for an agent's own web dashboard.
//
// It sends events to a PostHog-compatible collector (`<apiHost>/batch/`) with the
// identifying page attributes replaced by constants, and only while the agent says
// statistics are enabled. It never sets a cookie and never writes localStorage,
// sessionStorage or IndexedDB: the queue lives in memory. While disabled (or while the
// agent's consent endpoint has not said yes) it makes no request to the collector at all.
//
//   import { init, capture, register } from './anonstats.js'
//   init({ apiHost: 'https://stats.example.org', token: 'aw_...', distinctId: machineGuid,
//          consentUrl: '/api/v1/info', properties: { product_version: '1.2.3' } })
//   capture('chart_zoom', { chart: 'cpu' })
//
// The plain-script build (dist/anonstats.min.js) exposes the same functions as
// `window.anonstats`.

/** The constants every event carries in place of the real address and location. */
export const MASKS = {
  $ip: '127.0.0.1',
  $current_url: 'agent dashboard',
  $pathname: 'anonstats-dashboard',
  $host: 'dashboard.anonstats.invalid',
}

export const VERSION = '0.1.0'

/** Chrome, Firefox, Safari, Edge or Other: the only trait of the browser that is sent. */
export function browserFamily(ua) {
  ua = ua || ''
  if (/Edg(e|A|iOS)?\//.test(ua)) return 'Edge'
  if (/Firefox\/|FxiOS\//.test(ua)) return 'Firefox'
  if (/Chrom(e|ium)\/|CriOS\//.test(ua)) return 'Chrome'
  if (/Safari\//.test(ua)) return 'Safari'
  return 'Other'
}

function uuid() {
  const c = globalThis.crypto
  if (c.randomUUID) return c.randomUUID()
  // randomUUID exists only in secure contexts; a dashboard on http://host:port is not one.
  const b = c.getRandomValues(new Uint8Array(16))
  b[6] = (b[6] & 15) | 64
  b[8] = (b[8] & 63) | 128
  const h = [...b].map((x) => (x + 256).toString(16).slice(1)).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

async function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'))
  return new Response(stream).arrayBuffer()
}

/**
 * A separate instance (the module's own functions use a default one).
 * Options of init: apiHost, token, distinctId, enabled (default true), consentUrl,
 * properties (super properties), masks (replace the default mask values), flushAt (10),
 * flushInterval (2000 ms), retryDelay (1000 ms), compress (default true).
 */
export function create() {
  // state: 0 = not initialised or waiting for consent, 1 = sending, -1 = off for good
  let state = 0
  let o = {}
  let supers = {}
  let queue = []
  let timer = 0
  let onHide

  const off = () => {
    state = -1
    queue = []
    clearTimeout(timer)
    globalThis.removeEventListener?.('pagehide', onHide)
  }

  const schedule = () => {
    if (state !== 1 || !queue.length) return
    if (queue.length >= o.flushAt) flush()
    else if (!timer) timer = setTimeout(flush, o.flushInterval)
  }

  // Identity and masks are applied when sending, so events captured before init get them too.
  const body = (batch) =>
    JSON.stringify({
      api_key: o.token,
      sent_at: new Date().toISOString(),
      batch: batch.map((e) => ({
        ...e,
        distinct_id: o.distinctId,
        properties: { ...e.properties, ...o.masks },
      })),
    })

  async function post(batch) {
    const json = body(batch)
    let url = `${o.apiHost}/batch/`
    let data = json
    if (o.compress && typeof CompressionStream === 'function') {
      try {
        data = await gzip(json)
        url += '?compression=gzip-js'
      } catch {
        data = json
      }
    }
    // text/plain keeps it a simple request (no preflight); no cookie and no referrer go out.
    const req = {
      method: 'POST',
      body: data,
      headers: { 'content-type': 'text/plain' },
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
      keepalive: (data.byteLength || data.length) < 60000,
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const r = await fetch(url, req)
        if (r.ok || (r.status < 500 && r.status !== 429)) return r.ok
      } catch {
        // network error: retried once below
      }
      if (attempt === 0) await new Promise((res) => setTimeout(res, o.retryDelay))
    }
    return false
  }

  /** Sends what is queued now; resolves to true when the collector accepted it. */
  function flush(beacon) {
    clearTimeout(timer)
    timer = 0
    if (state !== 1 || !queue.length) return Promise.resolve(true)
    const batch = queue
    queue = []
    if (beacon === true && globalThis.navigator?.sendBeacon) {
      const blob = new Blob([body(batch)], { type: 'text/plain' })
      return Promise.resolve(navigator.sendBeacon(`${o.apiHost}/batch/`, blob))
    }
    return post(batch)
  }

  /**
   * Starts the instance. Resolves to true when events will be sent, false when statistics
   * are off (then nothing is ever sent and nothing captured is kept).
   */
  async function init(options) {
    o = {
      enabled: true,
      flushAt: 10,
      flushInterval: 2000,
      retryDelay: 1000,
      compress: true,
      ...options,
    }
    o.apiHost = String(o.apiHost || '').replace(/\/+$/, '')
    o.masks = { ...MASKS, ...o.masks }
    o.distinctId = o.distinctId || uuid()
    supers = { ...supers, ...o.properties }
    if (!o.enabled || !o.token || !o.apiHost) return off(), false
    if (o.consentUrl) {
      let yes = false
      try {
        const r = await fetch(o.consentUrl, { cache: 'no-store', credentials: 'same-origin' })
        yes = r.ok && (await r.json()).anonymous_statistics === true
      } catch {
        // an agent that cannot say yes has said no
      }
      if (!yes || state === -1) return off(), false
    }
    state = 1
    onHide = () => flush(true)
    globalThis.addEventListener?.('pagehide', onHide)
    schedule()
    return true
  }

  /** Super properties: kept for every later event; a later call overrides earlier ones. */
  function register(properties) {
    supers = { ...supers, ...properties }
  }

  /** Queues one event. Event properties override super properties; masks override both. */
  function capture(event, properties) {
    if (state === -1) return
    queue.push({
      uuid: uuid(),
      event: String(event),
      timestamp: new Date().toISOString(),
      properties: {
        $lib: 'anonstats.js',
        $lib_version: VERSION,
        $browser: browserFamily(globalThis.navigator?.userAgent),
        ...supers,
        ...properties,
      },
    })
    // Before consent is known events wait in memory (at most a page's worth).
    if (state === 0 && queue.length > 100) queue.shift()
    schedule()
  }

  /** Turns the instance off for the rest of the page's life and drops what is queued. */
  const disable = () => off()

  return { init, capture, register, flush, disable, enabled: () => state === 1 }
}

const main = create()
export const init = main.init
export const capture = main.capture
export const register = main.register
export const flush = main.flush
export const disable = main.disable
export const enabled = main.enabled
