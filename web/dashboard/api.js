// The admin API, read with the session cookie. A 401 anywhere means the session is gone:
// the app shows the log-in screen again.

import { Folded } from './ui.js'

export class AuthError extends Error {}

let onUnauthorized = () => {}
export function setUnauthorizedHandler(fn) { onUnauthorized = fn }

async function detailOf(res) {
  try {
    const body = await res.json()
    return body.detail || body.error || JSON.stringify(body)
  } catch {
    return `${res.status} ${res.statusText}`
  }
}

async function call(method, path, { params, body } = {}) {
  // Relative to the page, so that the dashboard works under `serve --base-path`.
  const rel = path.replace(/^\//, '')
  const url = params ? `${rel}?${params}` : rel
  let res
  try {
    res = await fetch(url, {
      method,
      credentials: 'same-origin',
      // Every write says JSON, also without a body: the collector refuses any other
      // Content-Type there, as only a same-origin page can send this one unasked.
      headers: method === 'GET' ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (e) {
    throw new Error(`cannot reach the collector (${e.message})`)
  }
  if (res.status === 401) {
    const why = await detailOf(res)
    if (path !== '/api/v1/session') onUnauthorized(why)
    throw new AuthError(why)
  }
  if (!res.ok) throw new Error(await detailOf(res))
  if (res.status === 204) return null
  return res.json()
}

export const get = (path, params) => call('GET', path, { params })
export const post = (path, body) => call('POST', path, { body })
export const del = (path) => call('DELETE', path)

export const login = (token) => post('/api/v1/session', { token })
export const logout = () => del('/api/v1/session')
/** An insight; a whole answer the k floor withheld rejects with `Folded` and its reason. */
export const insight = async (name, params) => {
  const r = await get(`/api/v1/insights/${name}`, params)
  if (r?.folded) throw new Folded(r.folded)
  return r
}
