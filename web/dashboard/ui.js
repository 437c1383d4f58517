// Small DOM helpers: elements without innerHTML, panels with loading / empty / error
// states, number and time formats, horizontal bar lists and tables.

/** h('div.card#id', {onclick, title, dataset: {...}}, child, ...) */
export function h(spec, attrs, ...children) {
  if (attrs === null || typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs)) {
    if (attrs !== undefined && attrs !== null) children.unshift(attrs)
    attrs = {}
  }
  const [, tag = 'div', rest = ''] = spec.match(/^([a-z0-9]*)(.*)$/i)
  const el = document.createElement(tag || 'div')
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1))
    else el.id = part.slice(1)
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k === 'class') el.className = v
    else if (k in el && typeof v !== 'string') el[k] = v
    else el.setAttribute(k, v === true ? '' : v)
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
}

export function clear(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

const nf = new Intl.NumberFormat('en-US')
const cf = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })
export const num = (n) => (n === null || n === undefined ? '–' : nf.format(n))
export const compact = (n) => (Math.abs(n) < 10_000 ? nf.format(Math.round(n * 10) / 10) : cf.format(n))
export const pct = (x) => `${(x * 100).toFixed(x >= 0.1 || x === 0 ? 0 : 1)}%`

export function dateTime(iso) {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC'
}

export function ago(iso, now = Date.now()) {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.round(s / 60)}m ago`
  if (s < 86400) return `${Math.round(s / 3600)}h ago`
  return `${Math.round(s / 86400)}d ago`
}

export const OTHER = 'other'

/** An answer the collector withheld by its k floor; the message says why. */
export class Folded extends Error {
  constructor({ reason, k }) { super(reason); this.k = k }
}
export const otherNote = (k) =>
  `values seen on fewer than ${k} machines, folded together so that no machine stands out`

/**
 * A panel: a titled card whose body shows loading, an empty state, an error, or content.
 * Its `data-state` (loading / ready / empty / error) tells the tests and the ready timer.
 */
export function panel(title, { sub, wide, cls, id } = {}) {
  const total = h('span.panel-total')
  const body = h('div.panel-body')
  const el = h(`section.panel${wide ? '.wide' : ''}${cls ? `.${cls}` : ''}`,
    { dataset: { state: 'loading' }, id },
    h('header.panel-head', h('div', h('h2', title), sub ? h('p.panel-sub', sub) : null), total),
    body)
  body.append(h('div.state.loading', h('span.spinner'), 'Loading…'))
  const p = {
    el,
    body,
    setTotal(text, value) {
      clear(total, text)
      if (value !== undefined) total.dataset.value = String(value)
    },
    ready(...children) { el.dataset.state = 'ready'; clear(body, ...children) },
    empty(msg) {
      el.dataset.state = 'empty'
      clear(body, h('div.state.empty', h('strong', 'Nothing here yet'), h('span', msg)))
    },
    /** The collector folded this panel's answer: say so, and why, instead of numbers. */
    folded(f) {
      el.dataset.state = 'folded'
      clear(body, h('div.state.folded', { role: 'note' },
        h('strong', `Folded to keep fewer than ${f.k} machines from standing out`), h('span.folded-reason', f.message)))
    },
    error(e) {
      el.dataset.state = 'error'
      clear(body, h('div.state.error', { role: 'alert' },
        h('strong', 'Could not load this panel'), h('span', e?.message || String(e))))
    },
    /** Runs `fn(p)`; a throw becomes the panel's error state. */
    async run(fn) {
      try { await fn(p) } catch (e) {
        if (e instanceof Folded) p.folded(e)
        else if (el.dataset.state === 'loading' || el.dataset.state === 'ready') p.error(e)
      }
    },
  }
  return p
}

/**
 * Horizontal bars: rows of {value, machines, count, share?}; the share is of `total`
 * machines when not given. "other" rows are drawn apart and explained.
 */
export function bars(rows, { k, total, onPick, metric = 'machines', unit = 'machines' } = {}) {
  const sum = total ?? rows.reduce((a, r) => a + (r[metric] || 0), 0)
  const max = Math.max(1, ...rows.map((r) => r[metric] || 0))
  return h('ol.bars', rows.map((r) => {
    const other = r.value === OTHER
    const share = r.share ?? (sum ? r[metric] / sum : 0)
    const fill = h('span.bar-fill')
    fill.style.width = `${Math.max(0.5, (100 * (r[metric] || 0)) / max)}%`
    const label = other ? h('span.bar-label', h('em', 'other'), h('span.hint', ` (< ${k} machines each)`)) :
      h('span.bar-label', r.value === '' ? h('em', '(empty)') : r.value)
    const pickable = onPick && !other
    return h(`li.bar${other ? '.other' : ''}${pickable ? '.pickable' : ''}`, {
      title: other ? otherNote(k) : pickable ? `${r.value}: ${num(r[metric])} ${unit} — click to filter` : `${r.value}: ${num(r[metric])} ${unit}`,
      onclick: pickable ? () => onPick(r.value) : undefined,
      dataset: { value: r.value },
    },
    h('span.bar-track', fill, label),
    h('span.bar-num', compact(r[metric] || 0)),
    h('span.bar-share', pct(share)))
  }))
}

/** A table: columns [{label, cell(row) -> node|text, cls}], rows; `onRow(row)` makes rows clickable. */
export function table(columns, rows, { onRow, rowClass } = {}) {
  return h('div.table-wrap', h('table.dt',
    h('thead', h('tr', columns.map((c) => h(`th${c.cls ? `.${c.cls}` : ''}`, c.label)))),
    h('tbody', rows.map((r) => h('tr', {
      class: [onRow && (!rowClass || !rowClass(r)?.includes('other')) ? 'clickable' : '', rowClass?.(r) || ''].join(' ').trim() || undefined,
      onclick: onRow ? () => onRow(r) : undefined,
      tabindex: onRow ? 0 : undefined,
      onkeydown: onRow ? (e) => { if (e.key === 'Enter') onRow(r) } : undefined,
    }, columns.map((c) => h(`td${c.cls ? `.${c.cls}` : ''}`, c.cell(r))))))))
}

/** A headline number. */
export function kpi(label, value, { sub, id, tone } = {}) {
  return h(`div.kpi${tone ? `.${tone}` : ''}`, { id, dataset: { value: String(value ?? '') } },
    h('span.kpi-label', label), h('span.kpi-value', typeof value === 'number' ? compact(value) : value ?? '–'),
    sub ? h('span.kpi-sub', sub) : null)
}
