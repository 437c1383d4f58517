// Cloud: failures of the cloud features over time, per CLOUD_* event, and by error code.
import { h, panel, bars, num, OTHER, otherNote } from '../ui.js'
import { timeChart, total, PALETTE, OTHER_COLOR } from '../charts.js'
import { insight } from '../api.js'
import { apiParams, addFilter } from '../state.js'

const EVENTS = {
  CLOUD_BUILD_FAIL: ['A dependency of the cloud features failed to build', '#f59e0b'],
  CLOUD_UNAVAILABLE: ['Cloud features unavailable', '#8b5cf6'],
  CLOUD_CONNECT_FAIL: ['Connection to the cloud failed', '#ef4444'],
}

export default async function cloud(view, ctx) {
  const pEvents = panel('Cloud failures', { sub: 'CLOUD_* events over time', wide: true, id: 'p-cloud-events' })
  const pCodes = panel('Failures by error code', { sub: 'error_code over time, all CLOUD_* events', wide: true, id: 'p-cloud-codes' })
  const pPer = Object.entries(EVENTS).map(([ev, [title]]) => [ev, panel(ev, { sub: `${title} · by error_code`, id: `p-${ev.toLowerCase()}` })])
  view.append(h('div.grid', pEvents.el), h('div.grid', pCodes.el),
    h('h3.section', 'Error codes per event'), h('div.grid.three', pPer.map(([, p]) => p.el)))

  const q = insight('cloud', apiParams({}, ctx.state))
  await Promise.allSettled([
    pEvents.run(async (p) => {
      const r = await q
      // Events sent by fewer than k machines come folded, without points.
      const names = Object.keys(r.events).filter((n) => r.events[n].length)
      const times = r.events[names[0]]?.map((x) => x.t) || []
      const series = names.map((n, i) => ({ label: n, values: r.events[n].map((x) => x.count), color: EVENTS[n]?.[1] || PALETTE[i] }))
      const sum = series.reduce((a, s) => a + total(s.values), 0)
      p.setTotal(`${num(sum)} failures`, sum)
      if (!sum) return p.empty('No CLOUD_* events in this range: the cloud features worked, or no machine reported otherwise.')
      p.ready()
      timeChart(p.body, times, series, { interval: r.interval })
      p.body.append(h('ul.legend-totals', series.map((s) => h('li', h('span.swatch', { dataset: { color: s.color } }), `${s.label}: `, h('strong', num(total(s.values)))))))
      for (const sw of p.body.querySelectorAll('.swatch')) sw.style.background = sw.dataset.color
    }),
    pCodes.run(async (p) => {
      const r = await q
      const times = Object.values(r.events)[0]?.map((x) => x.t) || []
      const codes = [...new Set(r.codes.map((c) => c.code))]
      const weight = (c) => r.codes.filter((x) => x.code === c).reduce((a, x) => a + x.count, 0)
      codes.sort((a, b) => (a === OTHER) - (b === OTHER) || weight(b) - weight(a))
      const sum = r.codes.reduce((a, c) => a + c.count, 0)
      p.setTotal(`${num(codes.filter((c) => c !== OTHER).length)} codes`, codes.length)
      if (!codes.length) return p.empty('No error_code on CLOUD_* events in this range.')
      p.ready()
      timeChart(p.body, times, codes.map((c, i) => ({
        label: c === OTHER ? `other (< ${r.k} machines each)` : `code ${c}`,
        color: c === OTHER ? OTHER_COLOR : PALETTE[i % PALETTE.length],
        values: times.map((t) => r.codes.find((x) => x.code === c && Date.parse(x.t) === Date.parse(t))?.count || 0),
      })), { interval: r.interval })
      if (codes.includes(OTHER)) p.body.append(h('p.note.other-note', `“other”: ${otherNote(r.k)}.`))
      p.body.append(h('p.note', `${num(sum)} failures carried an error code.`))
    }),
    ...pPer.map(([ev, p]) => p.run(async () => {
      const r = await insight('breakdown', apiParams({ interval: false, event: ev, property: 'error_code', limit: 8 }, ctx.state))
      const count = r.rows.reduce((a, x) => a + x.count, 0)
      p.setTotal(`${num(count)} events`, count)
      if (!r.rows.length) return p.empty(`No ${ev} with an error_code in this range.`)
      p.ready(bars(r.rows, { k: r.k, metric: 'count', unit: 'events', onPick: (v) => addFilter('error_code', v) }))
    })),
  ])
}
