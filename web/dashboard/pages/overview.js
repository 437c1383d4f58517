// Overview: headline numbers, active installs and events over time, version adoption as
// stacked shares, and the systems the software runs on.
import { h, panel, bars, kpi, num, pct, compact, OTHER, otherNote, Folded } from '../ui.js'
import { timeChart, total, PALETTE, OTHER_COLOR } from '../charts.js'
import { insight } from '../api.js'
import { apiParams, timeWindow, addFilter } from '../state.js'

const EVENT_SERIES = [
  { label: 'START', event: 'START', color: '#3b82f6' },
  { label: 'EXIT', event: 'EXIT', color: '#10b981' },
  { label: 'FATAL', event: 'FATAL', color: '#ef4444' },
  { label: 'CLOUD_*', event: 'CLOUD_BUILD_FAIL,CLOUD_UNAVAILABLE,CLOUD_CONNECT_FAIL', color: '#f59e0b' },
]

const TOP_VERSIONS = 7

const SYSTEMS = [
  ['host_os_name', 'Operating system'],
  ['system_kernel_version', 'Kernel'],
  ['system_architecture', 'Architecture'],
  ['system_virtualization', 'Virtualization'],
  ['system_container', 'Container'],
]

export default async function overview(view, ctx) {
  const w = timeWindow(ctx.state)
  const kpis = h('div.kpis#kpis', { dataset: { state: 'loading' } })
  const pActive = panel('Active installs', { sub: `distinct machines per ${w.interval}`, id: 'p-active' })
  const pEvents = panel('Events', { sub: `events per ${w.interval}, by kind`, id: 'p-events' })
  const pVersions = panel('Version adoption', { sub: 'share of active machines on each version', wide: true, id: 'p-versions' })
  const pSystems = SYSTEMS.map(([prop, title]) => [prop, panel(title, { sub: `share of machines · ${prop}`, id: `p-${prop}`, cls: 'sys' })])
  view.append(
    kpis,
    h('div.grid.two', pActive.el, pEvents.el),
    h('div.grid', pVersions.el),
    h('h3.section', 'Where it runs'),
    h('div.grid.systems', pSystems.map(([, p]) => p.el)),
  )

  const activeQ = insight('active', apiParams({}, ctx.state))
  const trendQ = insight('trend', apiParams({}, ctx.state))
  // An event kind sent by fewer than k machines is folded: left out of the chart.
  const perEventQ = Promise.all(EVENT_SERIES.map((s) => insight('trend', apiParams({ event: s.event }, ctx.state))
    .catch((e) => (e instanceof Folded ? { series: [] } : Promise.reject(e)))))
  const versionsQ = insight('versions', apiParams({ interval: w.interval === 'hour' ? 'day' : w.interval, limit: 20 }, ctx.state))
  // One request per panel: each is drawn as soon as its own answer is in.
  const systemsQ = SYSTEMS.map(([prop]) => insight('systems', apiParams({ interval: false, limit: 8, property: prop }, ctx.state)))

  const jobs = [
    pActive.run(async (p) => {
      const r = await activeQ
      const values = r.series.map((x) => x.machines)
      const peak = Math.max(0, ...values)
      p.setTotal(`peak ${num(peak)}`, peak)
      if (!peak) return p.empty('No machine reported in this range. Widen the range or remove filters.')
      p.ready()
      timeChart(p.body, r.series.map((x) => x.t), [{ label: 'machines', values, color: '#3b82f6', fill: true }], { interval: r.interval })
      p.body.append(h('p.note', r.accuracy))
    }),
    pEvents.run(async (p) => {
      const [all, per] = await Promise.all([trendQ, perEventQ])
      const values = all.series.map((x) => x.count)
      const sum = total(values)
      p.setTotal(`${num(sum)} events`, sum)
      if (!sum) return p.empty('No events in this range. Widen the range or remove filters.')
      p.ready()
      const series = [{ label: 'all events', values, color: '#64748b' }]
      EVENT_SERIES.forEach((s, i) => {
        if (per[i].series.length) series.push({ label: s.label, values: per[i].series.map((x) => x.count), color: s.color })
      })
      timeChart(p.body, all.series.map((x) => x.t), series, { interval: all.interval })
    }),
    pVersions.run(async (p) => {
      const r = await versionsQ
      const weight = new Map()
      for (const b of r.series) for (const v of b.values) weight.set(v.value, (weight.get(v.value) || 0) + v.machines)
      if (!weight.size) return p.empty('No product_version reported in this range.')
      // The most used versions by name, the rest (and the API's k-folded values) as "other".
      const top = [...weight.keys()].filter((n) => n !== OTHER)
        .sort((a, b) => weight.get(b) - weight.get(a)).slice(0, TOP_VERSIONS)
      const shareOf = (b, n) => b.values.find((v) => v.value === n)?.share || 0
      const rest = r.series.map((b) => b.values.filter((v) => !top.includes(v.value)).reduce((a, v) => a + v.share, 0))
      const last = [...r.series].reverse().find((b) => b.machines > 0)
      const now = last?.values.slice().sort((a, b) => b.machines - a.machines).find((v) => v.value !== OTHER)
      p.setTotal(now ? `${now.value}: ${pct(now.share)} now` : '', now?.value)
      p.ready()
      const series = top.map((n, i) => ({ label: n, color: PALETTE[i % PALETTE.length], values: r.series.map((b) => shareOf(b, n)) }))
      if (rest.some((x) => x > 0)) {
        series.push({ label: `other (${weight.size - top.length} more)`, color: OTHER_COLOR, values: rest })
      }
      timeChart(p.body, r.series.map((b) => b.t), series, { stacked: true, percent: true, height: 240, interval: r.interval })
      if (rest.some((x) => x > 0)) {
        p.body.append(h('p.note.other-note', `Grey: the less used versions, and ${otherNote(r.k)}.`))
      }
    }),
  ]

  const kpiJob = (async () => {
    try {
      const osQ = systemsQ[SYSTEMS.findIndex(([prop]) => prop === 'host_os_name')]
      const [a, t, per, sys] = await Promise.all([activeQ, trendQ, perEventQ, osQ])
      const act = a.series.map((x) => x.machines)
      const lastActive = [...act].reverse().find((v) => v > 0) ?? 0
      const events = total(t.series.map((x) => x.count))
      const fatal = total(per[2].series.map((x) => x.count))
      const starts = total(per[0].series.map((x) => x.count))
      const osRows = sys.properties.host_os_name || []
      const machines = osRows.reduce((acc, r) => acc + r.machines, 0)
      kpis.append(
        kpi('Machines in range', machines, { id: 'kpi-machines', sub: `${num(lastActive)} in the latest ${a.interval}` }),
        kpi('Events', events, { id: 'kpi-events', sub: `${compact(starts)} starts` }),
        kpi('Crashes (FATAL)', fatal, { id: 'kpi-fatal', tone: fatal ? 'bad' : 'good', sub: starts ? `${pct(fatal / Math.max(1, starts))} of starts` : 'no starts' }),
        kpi('Top OS', osRows.find((r) => r.value !== OTHER)?.value || '–', { id: 'kpi-os', sub: osRows[0] ? `${pct(osRows.find((r) => r.value !== OTHER)?.share || 0)} of machines` : '' }),
      )
      kpis.dataset.state = 'ready'
    } catch (e) {
      kpis.dataset.state = 'error'
      kpis.append(h(`div.state.${e instanceof Folded ? 'folded' : 'error'}`, { role: 'alert' },
        h('strong', e instanceof Folded ? `Folded to keep fewer than ${e.k} machines from standing out` : 'Headline numbers unavailable'),
        h('span.folded-reason', e.message)))
    }
  })()

  const sysJobs = pSystems.map(([prop, p], i) => systemsQ[i].then((r) => {
    const rows = r.properties[prop] || []
    const machines = rows.reduce((a, x) => a + x.machines, 0)
    p.setTotal(`${num(machines)} machines`, machines)
    if (!rows.length) return p.empty(`No machine reported ${prop} in this range.`)
    p.ready(bars(rows, { k: r.k, onPick: (v) => addFilter(prop, v) }))
  }, (e) => (e instanceof Folded ? p.folded(e) : p.error(e))))

  await Promise.allSettled([...jobs, kpiJob, ...sysJobs])
}
