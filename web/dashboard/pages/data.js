// Data: every property with its distinct values and examples, and (for admins) read-only
// SQL over the raw events.
import { h, panel, table, num, clear } from '../ui.js'
import { get, post } from '../api.js'
import { apiParams, addFilter } from '../state.js'

const EXAMPLE_SQL = `SELECT event,
       count(*) AS events,
       count(DISTINCT distinct_id) AS machines
FROM events
GROUP BY event
ORDER BY events DESC`

export default async function data(view, ctx) {
  const pProps = panel('Properties', { sub: 'every property seen in the range — click an example to filter by it', wide: true, id: 'p-properties' })
  if (ctx.role === 'admin') {
    const pSql = panel('SQL', { sub: 'read-only, over the raw tables (events: event, distinct_id, ts_ms, properties as JSON; use json_extract)', wide: true, id: 'p-sql' })
    view.append(h('div.grid', pSql.el))
    sqlBox(pSql)
  }
  view.append(h('div.grid', pProps.el))
  await pProps.run(async (p) => {
    const r = await get('/api/v1/properties', apiParams({ interval: false }, ctx.state))
    p.setTotal(`${num(r.properties.length)} properties`, r.properties.length)
    if (!r.properties.length) return p.empty('No events in this range, so no properties.')
    const rows = [...r.properties].sort((a, b) => b.events - a.events || a.name.localeCompare(b.name))
    p.ready(table([
      { label: 'Property', cell: (x) => h('code', x.name) },
      { label: 'Distinct values', cls: 'num', cell: (x) => num(x.distinct_values) },
      { label: 'Events', cls: 'num', cell: (x) => num(x.events) },
      {
        label: `Examples (seen on ≥ ${r.k} machines)`,
        cell: (x) => (x.examples.length
          ? h('span.tags', x.examples.slice(0, 6).map((v) => h('button.tag.pick', {
            type: 'button', title: `Filter by ${x.name}=${v}`, onclick: () => addFilter(x.name, v),
          }, v === '' ? h('em', '(empty)') : v)))
          : h('span.muted', { title: `no value of this property was seen on ${r.k} or more machines` }, 'none common enough to show')),
      },
    ], rows))
  })
}

function sqlBox(p) {
  const text = h('textarea#sql', { spellcheck: false, rows: 7, 'aria-label': 'SQL query' })
  text.value = EXAMPLE_SQL
  const out = h('div.sql-out#sql-out')
  const run = h('button.btn.primary#sql-run', { type: 'submit' }, 'Run')
  const form = h('form.sql', {
    onsubmit: async (e) => {
      e.preventDefault()
      run.disabled = true
      clear(out, h('div.state.loading', h('span.spinner'), 'Running…'))
      const started = performance.now()
      try {
        const r = await post('/api/v1/sql', { sql: text.value })
        const ms = Math.round(performance.now() - started)
        clear(out,
          h('p.note', `${num(r.rows.length)} rows in ${ms} ms${r.truncated ? ' — cut at the row limit' : ''}`),
          r.rows.length
            ? table(r.columns.map((c, i) => ({ label: c, cell: (row) => cell(row[i]) })), r.rows)
            : h('div.state.empty', h('strong', 'No rows'), h('span', 'The query ran and returned nothing.')))
      } catch (err) {
        clear(out, h('div.state.error', { role: 'alert' }, h('strong', 'The query failed'), h('span', err.message)))
      } finally {
        run.disabled = false
      }
    },
  }, text, h('div.sql-actions', run, h('span.muted', 'Ctrl+Enter runs it')))
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit() }
  })
  p.ready(form, out)
}

function cell(v) {
  if (v === null || v === undefined) return h('span.muted', 'NULL')
  if (typeof v === 'object') return h('code', JSON.stringify(v))
  return String(v)
}
