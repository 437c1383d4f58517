// The view's state lives in the URL hash, so that a view can be shared:
//   #/PAGE?range=30&project=default&filter=prop%3Dvalue&filter=...&from=DATE&to=DATE&ci=include
// `range` is a preset (7, 30, 90 days) or `custom` with inclusive `from` / `to` dates;
// `ci=include` counts the events of CI runs, which insights leave out by default.

export const PAGES = ['overview', 'crashes', 'cloud', 'live', 'data']
export const PRESETS = [7, 30, 90]
const DAY = 86_400_000

/** The current state parsed from `location.hash`. */
export function current() {
  const raw = location.hash.replace(/^#\/?/, '')
  const [path, query = ''] = raw.split('?')
  const q = new URLSearchParams(query)
  const page = PAGES.includes(path) ? path : 'overview'
  const range = q.get('range') || '30'
  const filters = q.getAll('filter')
    .map((f) => { const i = f.indexOf('='); return i > 0 ? [f.slice(0, i), f.slice(i + 1)] : null })
    .filter(Boolean)
  const extra = {}
  for (const [k, v] of q) {
    if (!['range', 'from', 'to', 'project', 'filter', 'ci'].includes(k)) extra[k] = v
  }
  return {
    page,
    range,
    from: q.get('from') || '',
    to: q.get('to') || '',
    project: q.get('project') || 'default',
    filters,
    ci: q.get('ci') === 'include',
    extra,
  }
}

/** The hash for a state. */
export function toHash(s) {
  const q = new URLSearchParams()
  q.set('range', s.range)
  if (s.range === 'custom') {
    if (s.from) q.set('from', s.from)
    if (s.to) q.set('to', s.to)
  }
  if (s.project && s.project !== 'default') q.set('project', s.project)
  for (const [k, v] of s.filters) q.append('filter', `${k}=${v}`)
  if (s.ci) q.set('ci', 'include')
  for (const [k, v] of Object.entries(s.extra || {})) if (v !== undefined && v !== null) q.set(k, v)
  return `#/${s.page}?${q}`
}

/** Navigates to the state with `patch` applied (extra page parameters are dropped on a page change). */
export function go(patch) {
  const s = current()
  const next = { ...s, ...patch }
  if (patch.page && patch.page !== s.page && !patch.extra) next.extra = {}
  const hash = toHash(next)
  if (hash !== location.hash) location.hash = hash
}

export function addFilter(prop, value) {
  const s = current()
  if (s.filters.some(([k, v]) => k === prop && v === value)) return
  go({ filters: [...s.filters, [prop, String(value)]] })
}

export function removeFilter(i) {
  const s = current()
  go({ filters: s.filters.filter((_, j) => j !== i) })
}

const isoDate = (ms) => new Date(ms).toISOString().slice(0, 10)

/** The range as the API takes it: `from` inclusive, `to` exclusive, plus a fitting interval. */
export function timeWindow(s = current()) {
  const today = Date.parse(isoDate(Date.now()))
  let from
  let to
  if (s.range === 'custom' && s.from) {
    from = Date.parse(s.from)
    to = s.to ? Date.parse(s.to) + DAY : today + DAY
  } else {
    const days = PRESETS.includes(Number(s.range)) ? Number(s.range) : 30
    from = today - (days - 1) * DAY
    to = null
  }
  if (!Number.isFinite(from)) from = today - 29 * DAY
  const span = ((to ?? today + DAY) - from) / DAY
  const interval = span <= 3 ? 'hour' : span <= 120 ? 'day' : 'week'
  return { from: isoDate(from), to: to === null ? null : isoDate(to), interval, days: span }
}

/**
 * Query parameters for the API: project, range, filters, plus `extra` (an object; arrays
 * become repeated keys). `interval: false` leaves the interval out.
 */
export function apiParams(extra = {}, s = current()) {
  const w = timeWindow(s)
  const q = new URLSearchParams()
  q.set('project', s.project)
  q.set('from', w.from)
  if (w.to) q.set('to', w.to)
  if (extra.interval !== false) q.set('interval', extra.interval || w.interval)
  for (const [k, v] of s.filters) q.append('filter', `${k}=${v}`)
  if (s.ci) q.set('ci', 'include')
  for (const [k, v] of Object.entries(extra)) {
    if (k === 'interval') continue
    for (const one of [].concat(v)) q.append(k, one)
  }
  return q
}
