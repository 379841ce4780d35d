// Misuse and concurrency (issue 28): wrong types, out-of-range values, thousands of calls in
// flight and several worker_threads at once get answers or JS errors, never a crash of the process.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { Recommender } = require('..')
const { fixture } = require('./fixture.js')

const f = fixture()
const pkg = path.resolve(__dirname, '..')
let rec

test.before(async () => {
  rec = await Recommender.open(f.registry, { store: f.store })
})

const ids = (n) => Array.from({ length: n }, (_, i) => `P${String(i).padStart(6, '0')}`)
const event = { userId: 'U0000001', itemId: 'P000001', eventType: 'view' }

// Each call must throw or reject with an Error; a crash would end the test process.
const misuses = [
  ['user id a number', () => rec.recommend(123)],
  ['user id null', () => rec.recommend(null)],
  ['k a string', () => rec.recommend('U0000001', { k: 'ten' })],
  ['k negative', () => rec.recommend('U0000001', { k: -1 })],
  ['k huge', () => rec.recommend('U0000001', { k: 1e12 })],
  ['k over 500', () => rec.recommend('U0000001', { k: 1_000_000 })],
  ['k not finite', () => rec.recommend('U0000001', { k: Infinity })],
  ['k NaN', () => rec.recommend('U0000001', { k: NaN })],
  ['exclude a string', () => rec.recommend('U0000001', { exclude: 'P000001' })],
  ['exclude of numbers', () => rec.recommend('U0000001', { exclude: [1, 2] })],
  ['exclude over the limit', () => rec.recommend('U0000001', { exclude: ids(1001) })],
  ['hour 99', () => rec.recommend('U0000001', { hour: 99 })],
  ['hour -1', () => rec.recommend('U0000001', { hour: -1 })],
  ['min price NaN', () => rec.recommend('U0000001', { minPrice: NaN })],
  ['options a string', () => rec.recommend('U0000001', 'home')],
  ['user id 100 kB', () => rec.recommend('x'.repeat(100_000))],
  ['similar of undefined', () => rec.similar(undefined)],
  ['similar k huge', () => rec.similar('P000001', { k: 1e9 })],
  ['ingest a string', () => rec.ingest('not events')],
  ['ingest one object, not an array', () => rec.ingest(event)],
  ['ingest a user id number', () => rec.ingest([{ ...event, userId: 1 }])],
  ['ingest a timestamp far ahead', () => rec.ingest([{ ...event, timestamp: 2 ** 60 }])],
  ['ingest a timestamp NaN', () => rec.ingest([{ ...event, timestamp: NaN }])],
  ['ingest a price string', () => rec.ingest([{ ...event, price: 'cheap' }])],
  ['open without a registry', () => Recommender.open()],
  ['open with a config string', () => Recommender.open(f.registry, { store: f.store, config: 'cache' })],
]

for (const [name, call] of misuses) {
  test(`misuse is an Error, not a crash: ${name}`, async () => {
    await assert.rejects(
      async () => call(),
      (e) => {
        assert.ok(e instanceof Error, `${name}: ${e}`)
        return true
      },
    )
  })
}

test('thousands of calls in flight at once, with errors among them', async () => {
  const calls = []
  for (let n = 0; n < 3000; n++) {
    const u = `U${String(1 + (n % 300)).padStart(7, '0')}`
    switch (n % 5) {
      case 0:
        calls.push(rec.recommend(u, { k: 10 }).then((r) => r.items.length))
        break
      case 1:
        calls.push(rec.ingest([{ userId: u, itemId: 'P000002', eventType: 'click' }]))
        break
      case 2:
        calls.push(rec.similar('P000003', { k: 5 }).then((r) => r.items.length))
        break
      case 3:
        calls.push(rec.recommend(u, { k: 0 }).then(() => 'no error', (e) => e.code))
        break
      default:
        calls.push(n % 500 === 4 ? rec.reload().then(() => 'reloaded') : Promise.resolve(rec.status().modelVersion))
    }
  }
  const out = await Promise.all(calls)
  out.forEach((v, n) => {
    if (n % 5 === 0) assert.equal(v, 10)
    if (n % 5 === 1) assert.equal(v, 1)
    if (n % 5 === 2) assert.equal(v, 5)
    if (n % 5 === 3) assert.equal(v, 'INVALID_ARGUMENT')
  })
})

test('several worker_threads using the binding at once, misuse included', async () => {
  const run = (seed) =>
    new Promise((resolve, reject) => {
      const worker = new Worker(
        `const { parentPort, workerData } = require('node:worker_threads')
         const { Recommender } = require(workerData.pkg)
         ;(async () => {
           const rec = await Recommender.open(workerData.registry, { store: workerData.store })
           let answered = 0, errors = 0
           for (let n = 0; n < 200; n++) {
             const u = 'U' + String(1 + ((n * 7 + workerData.seed) % 300)).padStart(7, '0')
             try {
               if (n % 4 === 3) await rec.recommend(u, { k: -5 })
               else if (n % 4 === 2) await rec.ingest([{ userId: u, itemId: 'P000004', eventType: 'view' }])
               else await rec.recommend(u, { k: 8 })
               answered++
             } catch (e) {
               if (!(e instanceof Error)) throw e
               errors++
             }
           }
           parentPort.postMessage({ answered, errors })
         })().catch((e) => { throw e })`,
        { eval: true, workerData: { pkg, registry: f.registry, store: f.store, seed } },
      )
      const exited = new Promise((r) => worker.once('exit', r))
      worker.once('message', (m) => exited.then((code) => resolve({ ...m, code })))
      worker.once('error', reject)
    })
  const results = await Promise.all([1, 2, 3, 4].map(run))
  for (const r of results) assert.deepEqual(r, { answered: 150, errors: 50, code: 0 })
})
