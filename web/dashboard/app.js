// The dashboard: log-in, then one page at a time under a shared bar of controls.
// The URL hash holds the page, range, project and filters (see state.js). A viewer's
// session sees only what a viewer may read: no Live page (raw events), no SQL.
import { h, clear } from './ui.js'
import { current } from './state.js'
import * as api from './api.js'
import { destroyAll } from './charts.js'
import { renderControls } from './controls.js'
import overview from './pages/overview.js'
import crashes from './pages/crashes.js'
import cloud from './pages/cloud.js'
import live from './pages/live.js'
import data from './pages/data.js'

const PAGES = { overview, crashes, cloud, live, data }
/** Pages a viewer's credential cannot use: the collector answers them 403. */
const ADMIN_ONLY = ['live']
const app = document.getElementById('app')
let projects = null
let role = null
let cleanups = []
let generation = 0

function loginScreen(message) {
  projects = null
  teardown()
  const error = h('p.login-error#login-error', { role: 'alert' }, message || '')
  const token = h('input#token', {
    type: 'password', name: 'token', autocomplete: 'current-password', required: true,
    placeholder: 'aa_… or av_…', 'aria-label': 'Admin or viewer token', autofocus: true,
  })
  const button = h('button.btn.primary#login', { type: 'submit' }, 'Log in')
  const form = h('form.login-card', {
    onsubmit: async (e) => {
      e.preventDefault()
      button.disabled = true
      clear(error)
      try {
        await api.login(token.value.trim())
        await start()
      } catch (err) {
        clear(error, err instanceof api.AuthError
          ? 'That token was refused: it is unknown or revoked. Use a token from `anonstats keys create-admin` or `anonstats keys create-viewer`.'
          : `Could not log in: ${err.message}`)
        token.select()
      } finally {
        button.disabled = false
      }
    },
  },
  h('div.login-brand', h('img', { src: 'dashboard/favicon.svg', alt: '', width: 40, height: 40 }), h('h1', 'anonstats')),
  h('p.muted', 'Anonymous usage statistics of your software. Log in with an admin or viewer token.'),
  h('label', { for: 'token' }, 'Admin or viewer token'), token, error, button,
  h('p.fine', 'The token is exchanged for a session cookie that scripts cannot read; it is not stored in this browser.'))
  clear(app, h('main.login', form))
  document.title = 'Log in · anonstats'
  token.focus()
}

function teardown() {
  for (const c of cleanups) { try { c() } catch { /* already gone */ } }
  cleanups = []
  destroyAll()
}

async function logout() {
  try { await api.logout() } catch { /* the session is gone either way */ }
  loginScreen('You are logged out.')
}

async function start() {
  try {
    const [list, session] = await Promise.all([api.get('/api/v1/projects'), api.get('/api/v1/session')])
    projects = list.projects
    role = session.role
  } catch (e) {
    if (e instanceof api.AuthError) return loginScreen()
    clear(app, h('main.fatal', h('div.state.error', { role: 'alert' },
      h('strong', 'The collector did not answer'), h('span', e.message))))
    return
  }
  render()
}

function render() {
  if (!projects) return
  teardown()
  const gen = ++generation
  const s = current()
  const controls = h('header.controls')
  const view = h('main#view', { dataset: { page: s.page, ready: 'false' } })
  clear(app, controls, view)
  const pages = Object.keys(PAGES).filter((p) => role === 'admin' || !ADMIN_ONLY.includes(p))
  renderControls(controls, { projects, pages, role, onLogout: logout })
  if (!pages.includes(s.page)) {
    clear(view, h('div.state.error', { role: 'alert' }, h('strong', 'This page needs an admin token'),
      h('span', 'It shows raw events; this session is a viewer\'s.')))
    view.dataset.ready = 'true'
    return
  }
  if (!projects.some((p) => p.name === s.project)) {
    clear(view, h('div.state.error', { role: 'alert' }, h('strong', `No project named “${s.project}”`),
      h('span', 'Pick one from the project list.')))
    view.dataset.ready = 'true'
    return
  }
  const started = performance.now()
  const ctx = {
    state: s,
    role,
    alive: () => gen === generation,
    onCleanup: (fn) => cleanups.push(fn),
  }
  document.title = `${s.page[0].toUpperCase()}${s.page.slice(1)} · anonstats`
  Promise.resolve(PAGES[s.page](view, ctx)).catch((e) => {
    clear(view, h('div.state.error', { role: 'alert' }, h('strong', 'This page failed'), h('span', e.message)))
  }).finally(() => {
    if (!ctx.alive()) return
    view.dataset.ready = 'true'
    view.dataset.ms = String(Math.round(performance.now() - started))
  })
}

api.setUnauthorizedHandler(() => { if (projects) loginScreen('Your session has ended. Log in again.') })
window.addEventListener('hashchange', render)
if (typeof uPlot === 'undefined') {
  window.addEventListener('load', start, { once: true })
} else {
  start()
}
