// Latency of `recommend` through the binding, one call at a time (median and p99 over N calls),
// for comparison with the Rust library's own figure for the same fixture (the binding adds
// argument conversion, a libuv work item and the promise). Usage: node bench/overhead.js [N]
'use strict'

const { Recommender } = require('..')
const { fixture } = require('../test/fixture.js')

async function main() {
  const n = Number(process.argv[2] ?? 2000)
  const f = fixture()
  const rec = await Recommender.open(f.registry, { store: f.store, data: f.data, config: { cache: { capacity: 0 } } })
  const user = (i) => `U${String(i % 1500).padStart(7, '0')}`
  for (let i = 0; i < 200; i++) await rec.recommend(user(i), { k: 20 })
  const us = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    await rec.recommend(user(i), { k: 20 })
    us.push(Number(process.hrtime.bigint() - t) / 1e3)
  }
  // The floor of a call's round trip (task on the pool, promise, JS error): a request the library
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
      calls: n,
      k: 20,
      recommend_median_us: q(us, 0.5),
      recommend_p99_us: q(us, 0.99),
      round_trip_floor_median_us: q(floor, 0.5),
    }),
  )
}

main()
