// "Overview ready": from navigation to every Overview panel rendered (charts drawn, bars
// listed), on a generated data set, logged in, in headless Chromium. Prints each run and
// the median. Usage: node dashboard-bench.mjs [--events N] [--machines M] [--runs R]
import { launchBrowser } from './lib.mjs'
import { startSeededCollector } from './dashboard-data.mjs'
import { logIn, openRoute } from './dashboard-helpers.mjs'

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const events = arg('events', 20000)
const machines = arg('machines', 300)
const runs = arg('runs', 7)

const collector = await startSeededCollector({ events, machines })
const browser = await launchBrowser()
try {
  const page = await browser.context.newPage()
  await page.setViewportSize({ width: 1440, height: 900 })
  await logIn(page, collector.url, collector.adminToken)
  const times = []
  for (let i = 0; i < runs; i++) {
    await page.goto('about:blank')
    const ms = await openRoute(page, collector.url, '#/overview?range=30')
    const inPage = await page.$eval('#view', (v) => Number(v.dataset.ms))
    times.push(ms)
    console.log(`run ${i + 1}: ${ms} ms from navigation (${inPage} ms from the first request to the last panel)`)
  }
  times.sort((a, b) => a - b)
  console.log(`overview ready: median ${times[Math.floor(times.length / 2)]} ms, best ${times[0]} ms ` +
    `(${events} events, ${machines} machines, ${collector.generator}, ${runs} runs)`)
} finally {
  await browser.close()
  await collector.stop()
}
