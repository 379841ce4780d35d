// Latency of `recommend` through the Node binding, one call at a time (median and p99 over N calls).
// Run by benches/binding_overhead.sh beside the Rust library call and the Python binding on the
// same model, store and user sequence; alone, it uses the test fixture.
//
//   node bench/overhead.js [--registry R --store S --data D --users U] [--requests N] [--gap-ms G]
//
// --gap-ms G waits G ms (a timer) before each timed call, as a server between requests does: the
// workers and the JS thread are then asleep when a call comes (0, the default: back to back).
// Users are `U%07d` of `i % U` for i = 0..N, the order the other two sides use. Prints one JSON line
// (cpu_per_call_us: the process's CPU time over the timed calls and the gaps, per call).
'use strict'

const { options, open } = require('./common.js')

async function main() {
  const kv = options('node bench/overhead.js [--registry R --store S --data D --users U] [--requests N] [--gap-ms G]')
  const { rec, users } = await open(kv)
  const n = Number(kv.requests ?? 5000)
  const gap = Number(kv['gap-ms'] ?? 0)
  const pause = () => (gap > 0 ? new Promise((r) => setTimeout(r, gap)) : null)
  const user = (i) => `U${String(i % users).padStart(7, '0')}`
  for (let i = 0; i < 200; i++) await rec.recommend(user(i), { k: 20 })
  const us = []
  // CPU of the whole process (every thread: the JS thread, the workers, spinning included).
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < n; i++) {
    await pause()
    const t = process.hrtime.bigint()
    await rec.recommend(user(i), { k: 20 })
    us.push(Number(process.hrtime.bigint() - t) / 1e3)
  }
  const cpu = process.cpuUsage(cpu0)
  // The floor of a call's round trip (hand-off to a worker and back, promise, JS error): a request the library
  // refuses after its first check, so Rust does almost no work.
  const floor = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    await rec.recommend(user(i), { k: 0 }).catch(() => {})
    floor.push(Number(process.hrtime.bigint() - t) / 1e3)
  }
  const q = (xs, p) => {
    xs.sort((a, b) => a - b)
    return Number(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(1))
  }
  console.log(
    JSON.stringify({
      side: 'node',
      requests: n,
      gap_ms: gap,
      p50_us: q(us, 0.5),
      p99_us: q(us, 0.99),
      round_trip_floor_p50_us: q(floor, 0.5),
      cpu_per_call_us: Number(((cpu.user + cpu.system) / n).toFixed(1)),
    }),
  )
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
