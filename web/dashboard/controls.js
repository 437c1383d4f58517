// The bar above every page: navigation, project, date range (presets and custom),
// property filters as chips, log-out. Everything it changes goes into the URL.
import { h, clear } from './ui.js'
import { current, go, PRESETS, removeFilter, addFilter, timeWindow } from './state.js'
import { get } from './api.js'

const TITLES = { overview: 'Overview', crashes: 'Crashes', cloud: 'Cloud', live: 'Live', data: 'Data' }

/** Known property names for the filter box, per project (fetched once). */
const known = new Map()
async function propertyNames(project) {
  if (!known.has(project)) {
    known.set(project, get('/api/v1/properties', new URLSearchParams({ project }))
      .then((r) => r.properties.map((p) => p.name))
      .catch(() => []))
  }
  return known.get(project)
}

/** `pages`: those the session's role may use; `role`: admin or viewer. */
export function renderControls(root, { projects, pages, role, onLogout }) {
  const s = current()
  const nav = h('nav.tabs', { 'aria-label': 'Pages' }, pages.map((p) => h('a.tab', {
    href: `#/${p}`,
    class: `tab${p === s.page ? ' active' : ''}`,
    'aria-current': p === s.page ? 'page' : undefined,
    dataset: { page: p },
    onclick: (e) => { e.preventDefault(); go({ page: p }) },
  }, TITLES[p])))

  const project = h('select#project', {
    'aria-label': 'Project',
    onchange: (e) => go({ project: e.target.value, filters: [] }),
  }, projects.map((p) => h('option', { value: p.name, selected: p.name === s.project }, p.name)))

  const presets = h('div.segmented', { role: 'group', 'aria-label': 'Date range' },
    PRESETS.map((d) => h('button.seg', {
      type: 'button',
      class: `seg${s.range === String(d) ? ' active' : ''}`,
      dataset: { range: String(d) },
      onclick: () => go({ range: String(d) }),
    }, `${d} days`)),
    h('button.seg', {
      type: 'button',
      class: `seg${s.range === 'custom' ? ' active' : ''}`,
      dataset: { range: 'custom' },
      onclick: () => {
        const w = timeWindow(s)
        const to = w.to ? new Date(Date.parse(w.to) - 86_400_000).toISOString().slice(0, 10)
          : new Date().toISOString().slice(0, 10)
        go({ range: 'custom', from: w.from, to })
      },
    }, 'Custom'))

  const custom = s.range === 'custom' ? h('form.custom-range', {
    onsubmit: (e) => {
      e.preventDefault()
      const f = new FormData(e.target)
      go({ range: 'custom', from: f.get('from'), to: f.get('to') })
    },
  },
  h('input#from', { type: 'date', name: 'from', value: s.from, required: true, 'aria-label': 'From' }),
  h('span', '→'),
  h('input#to', { type: 'date', name: 'to', value: s.to, 'aria-label': 'To (inclusive)' }),
  h('button.btn.small', { type: 'submit' }, 'Apply')) : null

  const list = h('datalist#filter-props')
  const input = h('input#filter-input', {
    type: 'text',
    placeholder: 'property=value',
    list: 'filter-props',
    autocomplete: 'off',
    'aria-label': 'Add a filter, as property=value',
    onfocus: async () => {
      const names = await propertyNames(s.project)
      if (!list.childElementCount) clear(list, names.map((n) => h('option', { value: `${n}=` })))
    },
  })
  const filterError = h('span.filter-error', { role: 'status' })
  const filterForm = h('form.filter-add', {
    onsubmit: (e) => {
      e.preventDefault()
      const v = input.value.trim()
      const i = v.indexOf('=')
      if (i <= 0 || i === v.length - 1) {
        clear(filterError, 'write a filter as property=value, e.g. host_os_name=Debian')
        return
      }
      addFilter(v.slice(0, i).trim(), v.slice(i + 1).trim())
    },
  }, input, list, h('button.btn.small#filter-add', { type: 'submit' }, 'Add filter'), filterError)

  const chips = h('div.chips#filters', s.filters.length
    ? s.filters.map(([k, v], i) => h('span.chip', { dataset: { filter: `${k}=${v}` } },
      h('span.chip-k', k), '=', h('span.chip-v', v),
      h('button.chip-x', { type: 'button', title: `Remove ${k}=${v}`, 'aria-label': `Remove filter ${k}=${v}`, onclick: () => removeFilter(i) }, '×')))
    : h('span.muted', 'No filters: every machine'))

  const ci = h('label.ci-toggle', { title: 'Events of CI runs (is_ci=true) are left out unless this is checked' },
    h('input#ci-include', { type: 'checkbox', checked: s.ci, onchange: (e) => go({ ci: e.target.checked }) }),
    h('span', 'Include CI runs'))

  clear(root,
    h('div.topbar',
      h('a.brand', { href: '#/overview' }, h('img', { src: 'dashboard/favicon.svg', alt: '', width: 22, height: 22 }), 'anonstats'),
      nav,
      h('div.spacer'),
      h('label.project', h('span.muted', 'Project'), project),
      h('span.role#role', { title: role === 'viewer' ? 'insights only: no raw events, no SQL' : 'every page' }, role),
      h('button.btn.ghost#logout', { type: 'button', onclick: onLogout }, 'Log out')),
    h('div.toolbar',
      presets, custom,
      h('div.filters', chips, filterForm), ci))
}
