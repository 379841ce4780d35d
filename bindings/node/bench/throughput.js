// Throughput of `recommend` through the Node binding with C calls in flight (batches of C
// concurrent calls, awaited together), and the process's CPU per call. Where overhead.js times
// one call at a time, this shows what the lane's spinning costs a loaded server.
//
//   node bench/throughput.js [--registry R --store S --data D --users U] [--concurrency C] [--requests N]
//
// Users are `U%07d` of a stride through 0..U. Prints one JSON line.
'use strict'

const { options, open } = require('./common.js')

async function main() {
  const kv = options('node bench/throughput.js [--registry R --store S --data D --users U] [--concurrency C] [--requests N]')
  const { rec, users } = await open(kv)
  const conc = Number(kv.concurrency ?? 8)
  const n = Number(kv.requests ?? 20000)
  let i = 0
  const user = () => `U${String((i++ * 7919) % users).padStart(7, '0')}`
  const batch = () => Promise.all(Array.from({ length: conc }, () => rec.recommend(user(), { k: 20 })))
  for (let w = 0; w < Math.max(3, 600 / conc); w++) await batch()
  const t = process.hrtime.bigint()
  const cpu0 = process.cpuUsage()
  let done = 0
  while (done < n) {
    await batch()
    done += conc
  }
  const seconds = Number(process.hrtime.bigint() - t) / 1e9
  const cpu = process.cpuUsage(cpu0)
  console.log(
    JSON.stringify({
      side: 'node',
      concurrency: conc,
      requests: done,
      calls_per_s: Math.round(done / seconds),
      cpu_per_call_us: Number(((cpu.user + cpu.system) / done).toFixed(1)),
    }),
  )
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
