// Node answers equal the Rust library's: the same users asked through the binding and through
// `recsys-serve` (the Rust Recommender behind HTTP), on the same model, store and dataset.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const readline = require('node:readline')
const { Recommender } = require('..')
const { fixture, binary } = require('./fixture.js')

const f = fixture()

// Re-ranking features include the time since the user's last events, taken at the instant of the
// request: two calls milliseconds apart differ in the 7th significant digit. Ids, order and reasons
// must be identical; scores equal to a relative 1e-4.
function close(a, b, what) {
  assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(Math.abs(a), Math.abs(b), 1e-6), `${what}: ${a} vs ${b}`)
}

function startServer() {
  const proc = spawn(
    binary('recsys-serve'),
    ['--registry', f.registry, '--store', f.store, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  return new Promise((resolve, reject) => {
    proc.on('error', reject)
    proc.on('exit', (code) => reject(new Error(`recsys-serve exited with ${code}`)))
    readline.createInterface({ input: proc.stdout }).once('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line)
      if (m) resolve({ proc, url: m[1] })
      else reject(new Error(`unexpected first line: ${line}`))
    })
  })
}

test('the binding and recsys-serve give the same items, reasons and scores', async () => {
  const { proc, url } = await startServer()
  try {
    const rec = await Recommender.open(f.registry, { store: f.store, config: { cache: { capacity: 0 } } })
    const users = [...Array(25).keys()].map((i) => `U${String(i * 37).padStart(7, '0')}`)
    users.push('a-visitor-nobody-knows')
    for (const user of users) {
      const res = await fetch(`${url}/api/v1/recommendations?user_id=${encodeURIComponent(user)}&k=10`)
      assert.equal(res.status, 200)
      const http = await res.json()
      const node = await rec.recommend(user, { k: 10 })
      assert.equal(node.modelVersion, http.model_version)
      assert.equal(node.source, http.source, user)
      assert.deepEqual(
        node.items.map((i) => [i.itemId, i.reason]),
        http.items.map((i) => [i.item_id, i.reason]),
        user,
      )
      node.items.forEach((it, j) => close(it.score, http.items[j].score, `${user} ${it.itemId}`))
    }
    const item = 'P000010'
    const http = await (await fetch(`${url}/api/v1/similar?item_id=${item}&k=10`)).json()
    const node = await rec.similar(item, { k: 10 })
    // Item-to-item similarity does not depend on time: exactly equal.
    assert.deepEqual(
      node.items.map((i) => [i.itemId, i.score]),
      http.items.map((i) => [i.item_id, i.score]),
    )
  } finally {
    proc.kill()
  }
})
