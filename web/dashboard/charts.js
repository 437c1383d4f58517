// Time charts on uPlot (vendored, loaded as the global `uPlot` by index.html): lines,
// filled areas and stacked shares, sized to their container, in UTC.
import { h, compact, pct } from './ui.js'

export const PALETTE = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4',
  '#ec4899', '#84cc16', '#f97316', '#6366f1', '#14b8a6']
export const OTHER_COLOR = '#9ca3af'

const live = new Set()

/** Destroys every chart (on a page change). */
export function destroyAll() {
  for (const c of live) c.destroy()
  live.clear()
}

const seconds = (iso) => Date.parse(iso) / 1000

function fade(hex, alpha) {
  const n = parseInt(hex.slice(1), 16)
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`
}

function axisFmt(percent) {
  return (u, splits) => splits.map((v) => (percent ? pct(v) : compact(v)))
}

/**
 * A time chart in `container`.
 * times: RFC 3339 strings; series: [{label, values, color?, fill?}].
 * options: {stacked: shares that add up (drawn as stacked areas), percent, height, interval}.
 */
export function timeChart(container, times, series, opts = {}) {
  const { stacked = false, percent = false, height = 220, interval = 'day' } = opts
  const xs = times.map(seconds)
  let data = series.map((s) => s.values.map((v) => v ?? 0))
  const raw = data
  let order = series.map((_, i) => i)
  if (stacked) {
    // Cumulative sums, drawn from the top band down so each lower band covers the next.
    const cum = []
    let acc = xs.map(() => 0)
    for (const d of data) { acc = acc.map((a, i) => a + d[i]); cum.push(acc) }
    data = cum
    order = order.reverse()
  }
  const colors = series.map((s, i) => s.color || PALETTE[i % PALETTE.length])
  const fmtVal = (v) => (v === null || v === undefined ? '–' : percent ? pct(v) : compact(v))
  const uSeries = [{ label: 'time', value: (u, v) => (v ? tsLabel(v, interval) : '–') }]
  for (const i of order) {
    uSeries.push({
      label: series[i].label,
      stroke: colors[i],
      width: stacked ? 1 : 2,
      fill: stacked ? fade(colors[i], 0.85) : series[i].fill ? fade(colors[i], 0.15) : undefined,
      points: { show: xs.length < 40 },
      value: (u, v, si, idx) => (idx === null || idx === undefined ? '–' : fmtVal(raw[i][idx])),
    })
  }
  const box = h('div.chart', { dataset: { points: String(xs.length), series: String(series.length) } })
  container.append(box)
  const width = () => Math.max(240, box.clientWidth || container.clientWidth || 600)
  const chart = new uPlot({
    width: width(),
    height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    legend: { live: true },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, percent ? 1 : niceMax(max)] } },
    axes: [
      { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' } },
      { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' }, values: axisFmt(percent), size: 52 },
    ],
    series: uSeries,
  }, [xs, ...order.map((i) => data[i])], box)
  live.add(chart)
  const ro = new ResizeObserver(() => {
    const w = width()
    if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height })
  })
  ro.observe(box)
  const destroy = chart.destroy.bind(chart)
  chart.destroy = () => { ro.disconnect(); destroy() }
  return chart
}

function niceMax(max) {
  if (!max || max <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(max))
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= max) return m * p
  return max
}

function tsLabel(sec, interval) {
  const iso = new Date(sec * 1000).toISOString()
  if (interval === 'hour') return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`
  if (interval === 'week') return `week of ${iso.slice(0, 10)}`
  if (interval === 'month') return iso.slice(0, 7)
  return iso.slice(0, 10)
}

/** Sum of one series' values. */
export const total = (values) => values.reduce((a, b) => a + (b || 0), 0)
