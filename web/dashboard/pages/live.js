// Live: the newest events, refreshed every few seconds; a row opens its properties.
// Filters apply here in the browser (the recent-events API takes only the project).
import { h, panel, clear, num, ago, dateTime } from '../ui.js'
import { get } from '../api.js'

const EVERY_MS = 3000
const COLUMNS = ['product_version', 'host_os_name', 'system_architecture']

export default async function live(view, ctx) {
  const { project, filters } = ctx.state
  const open = new Set()
  let paused = false
  let timer = null
  let seen = new Set()
  const status = h('span.live-status#live-status', 'connecting…')
  const pause = h('button.btn.small#live-pause', {
    type: 'button',
    onclick: () => { paused = !paused; clear(pause, paused ? 'Resume' : 'Pause'); if (!paused) tick() },
  }, 'Pause')
  const p = panel('Newest events', { sub: `refreshing every ${EVERY_MS / 1000} s · click an event for its properties${filters.length ? ' · filters applied in the browser' : ''}`, wide: true, id: 'p-live' })
  view.append(h('div.live-bar', h('span.dot'), status, pause), h('div.grid', p.el))

  const matches = (e) => filters.every(([k, v]) => String(e.properties?.[k] ?? '') === v)

  async function load() {
    const r = await get('/api/v1/events/recent', new URLSearchParams({ project, limit: '50' }))
    if (!ctx.alive()) return
    const events = r.events.filter(matches)
    const fresh = seen.size ? new Set(events.filter((e) => !seen.has(e.uuid)).map((e) => e.uuid)) : new Set()
    seen = new Set(events.map((e) => e.uuid))
    p.setTotal(`${num(events.length)} shown`, events.length)
    clear(status, `updated ${new Date().toISOString().slice(11, 19)} UTC`)
    if (!events.length) {
      return p.empty(r.events.length ? 'None of the newest events matches the filters.'
        : 'No events yet. Send one: anonstats send START, or any PostHog client.')
    }
    p.ready(h('div.table-wrap', h('table.dt.live',
      h('thead', h('tr', ['Time', 'Event', 'Machine', ...COLUMNS].map((c) => h('th', c)))),
      h('tbody', events.map((e) => rows(e, open, fresh.has(e.uuid)))))))
  }

  async function tick() {
    clearTimeout(timer)
    if (!ctx.alive() || paused) return
    try {
      await load()
    } catch (e) {
      if (!ctx.alive()) return
      clear(status, 'refresh failed')
      if (p.el.dataset.state === 'loading') p.error(e)
      else p.body.prepend(h('div.state.error.inline', { role: 'alert' }, e.message))
    }
    if (ctx.alive()) timer = setTimeout(tick, EVERY_MS)
  }
  ctx.onCleanup(() => clearTimeout(timer))
  await tick()
}

function rows(e, open, isNew) {
  const details = h('tr.props-row', { hidden: !open.has(e.uuid) },
    h('td', { colspan: 3 + COLUMNS.length }, props(e)))
  const row = h(`tr.clickable${isNew ? '.new' : ''}`, {
    dataset: { uuid: e.uuid },
    tabindex: 0,
    onclick: () => {
      if (open.has(e.uuid)) open.delete(e.uuid); else open.add(e.uuid)
      details.hidden = !open.has(e.uuid)
      row.classList.toggle('open', open.has(e.uuid))
    },
    class: open.has(e.uuid) ? 'clickable open' : undefined,
  },
  h('td', { title: dateTime(e.timestamp) }, ago(e.timestamp)),
  h('td', h(`span.ev.ev-${e.event.toLowerCase().replace(/[^a-z]/g, '')}`, e.event)),
  h('td', h('code.muted', { title: e.distinct_id }, e.distinct_id.slice(0, 8))),
  COLUMNS.map((c) => h('td', e.properties?.[c] ?? '')))
  return [row, details]
}

function props(e) {
  const entries = Object.entries(e.properties || {}).sort(([a], [b]) => a.localeCompare(b))
  return h('dl.props', h('dt', 'uuid'), h('dd', h('code', e.uuid)),
    h('dt', 'timestamp'), h('dd', e.timestamp),
    h('dt', 'distinct_id'), h('dd', h('code', e.distinct_id)),
    entries.map(([k, v]) => [h('dt', k), h('dd', typeof v === 'string' ? v : JSON.stringify(v))]))
}
