// The binding's own worker threads for the online calls (src/lane.rs): the same answers on the
// lane, with the JS thread sleeping, and on libuv's pool with busy-waiting off; a sleeping event
// loop kept alive and woken by finished calls; settings checked; nothing left spinning once the
// calls are done; one lane per worker_threads worker.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { Recommender } = require('..')
const { fixture } = require('./fixture.js')

const f = fixture()
const pkg = path.resolve(__dirname, '..')
const users = Array.from({ length: 40 }, (_, i) => `U${String(i * 37).padStart(7, '0')}`)
const openArgs = [f.registry, { store: f.store, config: { cache: { capacity: 0 } } }]

/** Runs `body` (an async function's text, given `rec`) in a fresh node with `env`; its stdout. */
function child(env, body) {
  const script = `
    const { Recommender } = require(${JSON.stringify(pkg)})
    ;(async () => {
      const rec = await Recommender.open(...${JSON.stringify(openArgs)})
      ${body}
    })().catch((e) => { console.log(JSON.stringify({ code: e.code, field: e.field, message: e.message })) })`
  return execFileSync(process.execPath, ['-e', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  })
}

/**
 * The same answers: everything equal but the scores, which may differ by a relative 1e-4 (the
 * re-ranker reads the time since the user's last events at the request instant), and the request
 * ids, which are unique per answer (each one a 32-hex id).
 */
function assertSame(actual, expected) {
  for (const a of actual) assert.match(a.requestId, /^[0-9a-f]{32}$/)
  const strip = ({ requestId, ...a }) => ({ ...a, items: a.items.map(({ itemId, reason }) => ({ itemId, reason })) })
  assert.deepEqual(actual.map(strip), expected.map(strip))
  actual.forEach((a, i) =>
    a.items.forEach((item, j) => {
      const want = expected[i].items[j].score
      assert.ok(Math.abs(item.score - want) <= 1e-4 * Math.abs(want), `${a.userId} ${item.itemId}: ${item.score} vs ${want}`)
    }),
  )
}

let expected
test.before(async () => {
  const rec = await Recommender.open(...openArgs)
  expected = await Promise.all(users.map((u) => rec.recommend(u, { k: 10 })))
})

const sameAnswersBody = `const users = ${JSON.stringify(users)}
  const one = []
  for (const u of users) one.push(await rec.recommend(u, { k: 10 }))
  const all = await Promise.all(users.map((u) => rec.recommend(u, { k: 10 })))
  // The process's thread names (Linux): the lane's workers are techshop-recs-N.
  const fs = require('node:fs')
  const threads = process.platform === 'linux'
    ? fs.readdirSync('/proc/self/task').map((t) => fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim())
    : null
  console.log(JSON.stringify({ one, all, threads }))`

/** How many of `threads` are lane workers (null when the platform cannot tell). */
const laneWorkers = (threads) => threads && threads.filter((t) => /^techshop-recs-\d+$/.test(t)).length

test('back-to-back calls run on the lane, woken when the JS thread sleeps, with the same answers', () => {
  // The first call goes to libuv's pool (nothing came before it); the ones right after it to the
  // lane. With a poll window of 0 the JS thread sleeps as soon as it has submitted a call, so each
  // lane answer arrives through the wake-up. One call at a time, then all at once.
  const env = { TECHSHOP_RECS_THREADS: '2', TECHSHOP_RECS_CORES: '2', TECHSHOP_RECS_POLL_US: '0' }
  const { one, all, threads } = JSON.parse(child(env, sameAnswersBody))
  assertSame(one, expected)
  assertSame(all, expected)
  if (threads) assert.equal(laneWorkers(threads), 2, threads.join(', '))
})

test('with busy-waiting off the calls run on the libuv pool, with the same answers', () => {
  const { one, all, threads } = JSON.parse(child({ TECHSHOP_RECS_SPIN_US: '0' }, sameAnswersBody))
  assertSame(one, expected)
  assertSame(all, expected)
  if (threads) assert.equal(laneWorkers(threads), 0, threads.join(', '))
})

test('a call in flight keeps a sleeping process alive until it settles', () => {
  // The second call follows the first at once, so the lane takes it, and with a poll window of 0
  // the JS thread sleeps at once. Nothing else holds the event loop: were the wake-up not holding
  // it, node would exit before the answer and print nothing.
  const out = child(
    { TECHSHOP_RECS_CORES: '2', TECHSHOP_RECS_POLL_US: '0' },
    `await rec.recommend(${JSON.stringify(users[2])}, { k: 10 })
     rec.recommend(${JSON.stringify(users[3])}, { k: 10 }).then((r) => console.log(JSON.stringify(r)))`,
  )
  assertSame([JSON.parse(out)], [expected[3]])
})

test('a bad lane setting rejects the call naming the variable', () => {
  for (const [name, value] of [
    ['TECHSHOP_RECS_SPIN_US', 'fast'],
    ['TECHSHOP_RECS_SPIN_US', '-5'],
    ['TECHSHOP_RECS_THREADS', '0'],
    ['TECHSHOP_RECS_POLL_US', '2s'],
    ['TECHSHOP_RECS_CORES', '0'],
  ]) {
    const out = child({ [name]: value }, `console.log(JSON.stringify(await rec.recommend('U0000001')))`)
    const e = JSON.parse(out)
    assert.equal(e.code, 'INVALID_ARGUMENT', out)
    assert.equal(e.field, name)
    assert.ok(e.message.includes(value), e.message)
  }
})

test('similar and ingest, back to back after a call, answer and reject with their codes', async () => {
  const rec = await Recommender.open(...openArgs)
  await rec.recommend(users[0])
  const s = await rec.similar(expected[0].items[0].itemId, { k: 5 })
  assert.equal(s.itemId, expected[0].items[0].itemId)
  assert.equal(s.items.length, 5)
  await assert.rejects(rec.similar('no-such-item'), (e) => e.code === 'NOT_FOUND')
  await assert.rejects(rec.similar('x', { k: 0.5 }), (e) => e.code === 'INVALID_ARGUMENT' && e.field === 'k')
  const n = await rec.ingest([{ userId: users[0], itemId: expected[0].items[0].itemId, eventType: 'view' }])
  assert.equal(n, 1)
})

test('nothing spins once the calls are done', async () => {
  const rec = await Recommender.open(...openArgs)
  await Promise.all(users.map((u) => rec.recommend(u)))
  for (const u of users) await rec.recommend(u)
  // The spin windows are 250 µs; a worker or the JS thread left spinning would use the whole
  // second below. Idle, the process uses next to nothing.
  await new Promise((r) => setTimeout(r, 50))
  const before = process.cpuUsage()
  const wall = performance.now()
  await new Promise((r) => setTimeout(r, 1000))
  const used = process.cpuUsage(before)
  const cpuMs = (used.user + used.system) / 1000
  const wallMs = performance.now() - wall
  assert.ok(cpuMs < wallMs / 4, `${cpuMs.toFixed(0)} ms of CPU in ${wallMs.toFixed(0)} ms idle`)
})

test('a worker_threads worker has its own lane and exits cleanly', async () => {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     const { Recommender } = require(workerData.pkg)
     ;(async () => {
       const rec = await Recommender.open(...workerData.openArgs)
       // One at a time, so that all but the first run on the worker's own lane.
       const answers = []
       for (const u of workerData.users) answers.push(await rec.recommend(u, { k: 10 }))
       parentPort.postMessage(answers)
     })()`,
    { eval: true, workerData: { pkg, openArgs, users } },
  )
  // Both listeners from the start: the worker exits right after posting its answers.
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const answers = await new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  assertSame(answers, expected)
  assert.equal(await exited, 0)
})
