// "Overview ready" on an already running collector (the benchmark's 10M-event store):
// the same measurement as tests/browser/dashboard-bench.mjs, without generating data.
// Usage: node overview.mjs URL ADMIN_TOKEN [RUNS]   (needs tests/browser's node_modules)
import { launchBrowser } from '../../tests/browser/lib.mjs'
import { logIn, openRoute } from '../../tests/browser/dashboard-helpers.mjs'

const [url, token, runsArg] = process.argv.slice(2)
if (!url || !token) {
  console.error('usage: node overview.mjs URL ADMIN_TOKEN [RUNS]')
  process.exit(2)
}
const runs = Number(runsArg || 7)
const browser = await launchBrowser()
try {
  const page = await browser.context.newPage()
  await page.setViewportSize({ width: 1440, height: 900 })
  await logIn(page, url, token)
  for (const route of ['#/overview?range=30', '#/overview?range=30&filter=system_architecture%3Dx86_64']) {
    console.log(route)
    const times = []
    const inPage = []
    for (let i = 0; i < runs; i++) {
      await page.goto('about:blank')
      const ms = await openRoute(page, url, route)
      const own = await page.$eval('#view', (v) => Number(v.dataset.ms))
      times.push(ms)
      inPage.push(own)
      console.log(`run ${i + 1}: ${ms} ms from navigation (${own} ms from the first request to the last panel)`)
    }
    const sorted = [...times].sort((a, b) => a - b)
    const ownSorted = [...inPage].sort((a, b) => a - b)
    console.log(`overview ready: median ${sorted[Math.floor(runs / 2)]} ms, best ${sorted[0]} ms, ` +
      `first request to last panel ${ownSorted[0]}-${ownSorted[runs - 1]} ms (${runs} runs)`)
  }
} finally {
  await browser.close()
}
