// Crashes: the FATAL top list by crash site (function, file, line); a row opens the site:
// its events over time and the versions and systems it happens on.
import { h, panel, table, bars, num, dateTime, ago, kpi, OTHER, otherNote } from '../ui.js'
import { timeChart, total } from '../charts.js'
import { insight } from '../api.js'
import { apiParams, go, current, addFilter } from '../state.js'

const siteFilters = (site) => [
  `fatal_function=${site.function}`, `fatal_file=${site.file}`, `fatal_line=${site.line}`]

export default async function crashes(view, ctx) {
  const e = ctx.state.extra
  if (e.function !== undefined || e.file !== undefined || e.line !== undefined) {
    return site(view, ctx, { function: e.function || '', file: e.file || '', line: e.line || '' })
  }
  const pTrend = panel('FATAL events', { sub: 'crashes over time', wide: true, id: 'p-fatal-trend' })
  const pTop = panel('Crash sites', { sub: 'FATAL events grouped by function, file and line — click one for details', wide: true, id: 'p-crash-sites' })
  view.append(h('div.grid', pTrend.el), h('div.grid', pTop.el))

  await Promise.allSettled([
    pTrend.run(async (p) => {
      const [all, machines] = await Promise.all([
        insight('trend', apiParams({ event: 'FATAL' }, ctx.state)),
        insight('active', apiParams({ event: 'FATAL' }, ctx.state)),
      ])
      const counts = all.series.map((x) => x.count)
      const sum = total(counts)
      p.setTotal(`${num(sum)} crashes`, sum)
      if (!sum) return p.empty('No FATAL events in this range: nothing crashed, or no machine reported it.')
      p.ready()
      timeChart(p.body, all.series.map((x) => x.t), [
        { label: 'FATAL events', values: counts, color: '#ef4444', fill: true },
        { label: 'machines crashing', values: machines.series.map((x) => x.machines), color: '#8b5cf6' },
      ], { interval: all.interval })
    }),
    pTop.run(async (p) => {
      const r = await insight('crashes', apiParams({ interval: false, limit: 50 }, ctx.state))
      p.setTotal(`${num(r.sites.filter((s) => s.function !== OTHER).length)} sites`, r.sites.length)
      if (!r.sites.length) return p.empty('No crash sites in this range.')
      p.ready(table([
        { label: 'Function', cell: (s) => (s.function === OTHER ? h('span.other-cell', { title: otherNote(r.k) }, `other (< ${r.k} machines each)`) : h('code', s.function || '(unknown)')) },
        { label: 'Location', cell: (s) => (s.function === OTHER ? '' : h('code.muted', `${s.file || '?'}:${s.line || '?'}`)) },
        { label: 'Events', cls: 'num', cell: (s) => num(s.count) },
        { label: 'Machines', cls: 'num', cell: (s) => num(s.machines) },
        { label: 'First seen', cell: (s) => h('span', { title: dateTime(s.first_seen) }, dateTime(s.first_seen).slice(0, 10)) },
        { label: 'Last seen', cell: (s) => h('span', { title: dateTime(s.last_seen) }, ago(s.last_seen)) },
        { label: 'Versions', cell: (s) => h('span.tags', versionTags(s.versions)) },
      ], r.sites, {
        rowClass: (s) => (s.function === OTHER ? 'other' : ''),
        onRow: (s) => {
          if (s.function === OTHER) return
          go({ extra: { function: s.function, file: s.file, line: s.line } })
        },
      }))
      if (r.sites.some((s) => s.function === OTHER)) p.body.append(h('p.note.other-note', `The “other” row holds crash sites seen on fewer than ${r.k} machines each.`))
    }),
  ])
}

function versionTags(versions) {
  const shown = versions.slice(0, 4).map((v) => h('span.tag', v))
  if (versions.length > 4) shown.push(h('span.tag.more', { title: versions.slice(4).join(', ') }, `+${versions.length - 4}`))
  return shown
}

async function site(view, ctx, s) {
  const filter = siteFilters(s)
  const params = (extra) => {
    const q = apiParams(extra, ctx.state)
    for (const f of filter) q.append('filter', f)
    return q
  }
  const back = h('a.back', {
    href: '#',
    onclick: (e) => { e.preventDefault(); go({ extra: {} }) },
  }, '← All crash sites')
  const head = h('div.site-head#crash-site', back,
    h('h2', h('code', s.function || '(unknown function)')),
    h('p.muted', h('code', `${s.file || '?'}:${s.line || '?'}`), ' · filters ',
      filter.map((f) => h('code.tag', f))),
    h('div.kpis#site-kpis'))
  const pTrend = panel('Events of this crash site', { sub: 'FATAL events over time', wide: true, id: 'p-site-trend' })
  const pVersions = panel('Versions', { sub: 'machines crashing here, by product_version', id: 'p-site-versions' })
  const pOs = panel('Operating systems', { sub: 'machines crashing here, by host_os_name', id: 'p-site-os' })
  const pArch = panel('Architectures', { sub: 'by system_architecture', id: 'p-site-arch' })
  const pKernel = panel('Kernels', { sub: 'by system_kernel_version', id: 'p-site-kernel' })
  view.append(head, h('div.grid', pTrend.el), h('div.grid.two', pVersions.el, pOs.el), h('div.grid.two', pArch.el, pKernel.el))

  const breakdown = (p, property) => p.run(async () => {
    const r = await insight('breakdown', params({ interval: false, event: 'FATAL', property, limit: 10 }))
    const machines = r.rows.reduce((a, x) => a + x.machines, 0)
    p.setTotal(`${num(machines)} machines`, machines)
    if (!r.rows.length) return p.empty(`No ${property} on these events.`)
    p.ready(bars(r.rows, { k: r.k, onPick: (v) => { addFilter(property, v); keepSite(s) } }))
  })
  await Promise.allSettled([
    pTrend.run(async (p) => {
      const r = await insight('trend', params({ event: 'FATAL' }))
      const counts = r.series.map((x) => x.count)
      const sum = total(counts)
      p.setTotal(`${num(sum)} events`, sum)
      if (!sum) return p.empty('This crash site has no events in this range with these filters.')
      p.ready()
      timeChart(p.body, r.series.map((x) => x.t), [{ label: 'FATAL events', values: counts, color: '#ef4444', fill: true }], { interval: r.interval })
      const kp = document.getElementById('site-kpis')
      kp?.append(kpi('Events', sum, { id: 'kpi-site-events', tone: 'bad' }))
    }),
    breakdown(pVersions, 'product_version'),
    breakdown(pOs, 'host_os_name'),
    breakdown(pArch, 'system_architecture'),
    breakdown(pKernel, 'system_kernel_version'),
  ])
}

// A filter added from the site view keeps the site open.
function keepSite(s) {
  const c = current()
  if (c.extra.function === undefined) go({ extra: { function: s.function, file: s.file, line: s.line } })
}
