// A collector with a realistic data set for the dashboard tests and benchmark: made by
// `anonstats gen` when the binary has it, otherwise by posting synthetic agent events to
// /batch/ (the same shape: START / EXIT / FATAL / CLOUD_* from machines with an OS, kernel,
// architecture, virtualization and container, upgrading through versions over the days).
import { spawn, execFileSync, spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { ANONSTATS_BIN, initialTokens, tempDir } from './lib.mjs'

const DAY = 86_400_000

function hasGen() {
  const r = spawnSync(ANONSTATS_BIN, ['gen', '--help'], { encoding: 'utf8' })
  return r.status === 0 && /--events/.test(r.stdout)
}

function serve(dataDir, args = []) {
  const proc = spawn(ANONSTATS_BIN, ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => { err += d })
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); fail(new Error(`serve did not start: ${out}${err}`)) }, 30_000)
    proc.stdout.on('data', (d) => {
      out += d
      const m = out.match(/^listening on (http:\/\/\S+)/m)
      if (m) { clearTimeout(timer); ok({ proc, url: m[1].replace(/\/$/, ''), out: () => out }) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); fail(new Error(`serve exited with ${code}: ${err}`)) })
  })
}

/**
 * Starts `anonstats serve` on a fresh data dir holding `events` events of `machines`
 * machines over `days` days, with more `serve` arguments `args`. Returns {url, adminToken,
 * dataDir, generator, stop()}.
 */
export async function startSeededCollector({ events = 20000, machines = 300, days = 30, seed = 7, args = [] } = {}) {
  const dataDir = tempDir('dash')
  const generator = hasGen() ? 'anonstats gen' : 'synthetic /batch/ posts'
  if (generator === 'anonstats gen') {
    execFileSync(ANONSTATS_BIN, ['gen', '--data-dir', dataDir, '--events', String(events),
      '--machines', String(machines), '--days', String(days), '--seed', String(seed)], { stdio: 'pipe' })
  }
  const server = await serve(dataDir, args)
  if (generator !== 'anonstats gen') {
    const { token } = initialTokens(dataDir)
    if (!token) throw new Error(`no write token in ${dataDir}/initial-tokens.txt: ${server.out()}`)
    await postSynthetic(server.url, token, { events, machines, days, seed })
  }
  const adminToken = execFileSync(ANONSTATS_BIN, ['keys', 'create-admin', '--data-dir', dataDir],
    { encoding: 'utf8' }).trim().split('\n').pop().trim()
  return {
    url: server.url,
    adminToken,
    dataDir,
    generator,
    async stop() {
      if (server.proc.exitCode === null) {
        await new Promise((done) => {
          const t = setTimeout(() => server.proc.kill('SIGKILL'), 5000)
          server.proc.once('exit', () => { clearTimeout(t); done() })
          server.proc.kill('SIGTERM')
        })
      }
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pick = (r, weighted) => {
  const sum = weighted.reduce((a, [, w]) => a + w, 0)
  let x = r() * sum
  for (const [v, w] of weighted) { x -= w; if (x < 0) return v }
  return weighted[weighted.length - 1][0]
}

const OS = [
  [['Debian GNU/Linux', 'debian', '12'], 30], [['Ubuntu', 'ubuntu', '22.04'], 35],
  [['Ubuntu', 'ubuntu', '24.04'], 10], [['CentOS Stream', 'centos', '9'], 8],
  [['Fedora Linux', 'fedora', '40'], 6], [['Alpine Linux', 'alpine', '3.20'], 5],
  [['Arch Linux', 'arch', ''], 3], [['Gentoo', 'gentoo', '2.15'], 1], [['NixOS', 'nixos', '24.05'], 1],
  [['Void', 'void', ''], 1],
]
const KERNEL = [['6.1.0-25-amd64', 30], ['5.15.0-118-generic', 30], ['6.8.0-45-generic', 15],
  ['5.14.0-503.el9.x86_64', 10], ['6.10.12', 8], ['4.19.0-27-amd64', 4], ['6.11.0-rc7', 1]]
const ARCH = [['x86_64', 78], ['aarch64', 17], ['armv7l', 5]]
const VIRT = [['none', 45], ['kvm', 25], ['vmware', 10], ['amazon', 8], ['microsoft', 6], ['google', 4], ['xen', 2]]
const CONTAINER = [['none', 62], ['docker', 28], ['podman', 5], ['lxc', 4], ['systemd-nspawn', 1]]
const VERSIONS = [['v1.44.3', 0], ['v1.45.0', 0.25], ['v1.45.1', 0.55], ['v1.46.0-rc1', 0.9]]
const SITES = [
  [['rrdeng_load_page', 'database/engine/pagecache.c', '411', 11], 40],
  [['web_client_api_request', 'web/api/web_api.c', '1287', 104], 25],
  [['health_alarm_execute', 'health/health.c', '733', 12], 15],
  [['mqtt_ng_connect', 'aclk/mqtt_ng.c', '2210', 110], 12],
  [['proc_net_dev', 'collectors/proc.plugin/proc_net_dev.c', '96', 2], 3],
  [['cgroup_read_cpuacct', 'collectors/cgroups.plugin/sys_fs_cgroup.c', '1502', 22], 1],
]
const CLOUD = [['CLOUD_CONNECT_FAIL', 60], ['CLOUD_UNAVAILABLE', 25], ['CLOUD_BUILD_FAIL', 15]]
const CODES = [['ECONNREFUSED', 40], ['ETIMEDOUT', 30], ['TLS_HANDSHAKE', 15], ['HTTP_403', 10], ['ENOTFOUND', 3], ['EPROTO', 2]]

function uuid(r) {
  const hex = Array.from({ length: 32 }, () => Math.floor(r() * 16).toString(16))
  hex[12] = '4'
  return `${hex.slice(0, 8).join('')}-${hex.slice(8, 12).join('')}-${hex.slice(12, 16).join('')}-${hex.slice(16, 20).join('')}-${hex.slice(20).join('')}`
}

export function synthetic({ events, machines, days, seed, now = Date.now() }) {
  const r = rng(seed)
  const fleet = Array.from({ length: machines }, () => {
    const [os, id, ver] = pick(r, OS)
    return {
      id: uuid(r), os, osId: id, osVer: ver, kernel: pick(r, KERNEL), arch: pick(r, ARCH),
      virt: pick(r, VIRT), container: pick(r, CONTAINER), upgradeLag: r() * 0.3,
      activity: 0.2 + r() * r() * 3, crashy: r() < 0.25, cloudy: r() < 0.3,
    }
  })
  const weights = fleet.map((m) => m.activity)
  const sum = weights.reduce((a, b) => a + b, 0)
  const start = now - days * DAY
  const out = []
  for (let i = 0; i < events; i++) {
    let x = r() * sum
    let m = fleet[0]
    for (let j = 0; j < fleet.length; j++) { x -= weights[j]; if (x < 0) { m = fleet[j]; break } }
    const frac = r()
    const ts = start + frac * (now - start - 60_000)
    const version = [...VERSIONS].reverse().find(([, at]) => frac - m.upgradeLag >= at)?.[0] ?? VERSIONS[0][0]
    const props = {
      product_name: 'netdata', product_version: version, release_channel: version.includes('rc') ? 'nightly' : 'stable',
      install_type: m.container === 'docker' ? 'oci' : 'kickstart',
      host_os_name: m.os, host_os_id: m.osId, host_os_version_id: m.osVer,
      system_kernel_name: 'Linux', system_kernel_version: m.kernel, system_architecture: m.arch,
      system_virtualization: m.virt, system_container: m.container,
      system_cpu_logical_cpu_count: String(pick(r, [[2, 3], [4, 4], [8, 3], [16, 1]])),
    }
    const roll = r()
    let event
    if (roll < (m.crashy ? 0.1 : 0.015)) {
      event = 'FATAL'
      const [fn, file, line, errno] = pick(r, SITES)
      Object.assign(props, { fatal_function: fn, fatal_file: file, fatal_line: line, fatal_process: 'netdata',
        fatal_thread: 'MAIN', action_data: `${line}@${file}:${fn}/${errno}` })
    } else if (roll < 0.16 && m.cloudy) {
      event = pick(r, CLOUD)
      if (event !== 'CLOUD_BUILD_FAIL') props.error_code = pick(r, CODES)
    } else {
      event = r() < 0.58 ? 'START' : 'EXIT'
    }
    out.push({ event, distinct_id: m.id, uuid: uuid(r), timestamp: new Date(ts).toISOString(), properties: props })
  }
  return out
}

async function postSynthetic(url, token, opts) {
  const all = synthetic(opts)
  for (let i = 0; i < all.length; i += 2000) {
    const res = await fetch(`${url}/batch/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ api_key: token, batch: all.slice(i, i + 2000) }),
    })
    if (!res.ok) throw new Error(`/batch/ answered ${res.status}: ${await res.text()}`)
  }
}
