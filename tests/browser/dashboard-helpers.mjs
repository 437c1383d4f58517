// Helpers of the collector dashboard tests and benchmark: log in, wait for a page to be
// fully rendered (every panel loaded, see app.js `data-ready`), read a panel's state.
import { existsSync } from 'node:fs'
import { ANONSTATS_BIN, CHROMIUM } from './lib.mjs'

/** Why the dashboard tests cannot run here, or null (an error in CI). */
export function dashboardSkipReason() {
  const missing = [CHROMIUM, ANONSTATS_BIN].filter((p) => !existsSync(p))
  if (!missing.length) return null
  const why = `missing ${missing.join(', ')} (apt-get install chromium; cargo build -p anonstats)`
  if (process.env.CI) throw new Error(`dashboard tests cannot run in CI: ${why}`)
  return why
}

/** Waits until the view of `page` (overview, crashes, ...) has every panel loaded. */
export async function waitReady(page, name, timeout = 30_000) {
  await page.waitForSelector(`#view[data-page="${name}"][data-ready="true"]`, { timeout })
}

/**
 * Runs `action`, which makes the page render again, and waits until the new view is
 * ready: the old one may still say it is ready while the route change is under way.
 */
export async function rerender(page, name, action) {
  await page.$eval('#view', (v) => { v.dataset.old = 'true' })
  await action()
  await page.waitForSelector(`#view[data-page="${name}"][data-ready="true"]:not([data-old])`, { timeout: 30_000 })
}

/** Navigates to a hash route and waits until it is rendered; returns the milliseconds. */
export async function openRoute(page, base, hash, name = hash.replace(/^#\/?/, '').split('?')[0]) {
  const t0 = Date.now()
  await page.goto(`${base}/${hash}`)
  await waitReady(page, name)
  return Date.now() - t0
}

export async function logIn(page, base, token) {
  await page.goto(`${base}/`)
  await page.fill('#token', token)
  await page.click('#login')
  await waitReady(page, 'overview')
}

/** {state, total} of the panel with this id. */
export async function panelInfo(page, id) {
  return page.$eval(`#${id}`, (el) => ({
    state: el.dataset.state,
    total: Number(el.querySelector('.panel-total')?.dataset.value ?? NaN),
    canvases: el.querySelectorAll('canvas').length,
    points: Number(el.querySelector('.chart')?.dataset.points ?? 0),
    bars: el.querySelectorAll('.bar').length,
    rows: el.querySelectorAll('tbody tr').length,
  }))
}

export async function kpiValue(page, id) {
  return page.$eval(`#${id}`, (el) => el.dataset.value)
}
