// Starts the BFF on port 0 over the binding's test fixture and queries it over HTTP.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { start } = require('../server.js')
const { fixture } = require(path.join(__dirname, '..', '..', '..', 'bindings', 'node', 'test', 'fixture.js'))

let server
let base

test.before(async () => {
  const f = fixture()
  server = await start({ registry: f.registry, store: f.store, port: 0 })
  base = `http://127.0.0.1:${server.address().port}`
})

test.after(() => server?.close())

test('GET /recommendations answers k items', async () => {
  const res = await fetch(`${base}/recommendations?userId=U0000005&k=8`)
  assert.equal(res.status, 200)
  const body = await res.json()
  assert.equal(body.userId, 'U0000005')
  assert.equal(body.items.length, 8)
  assert.ok(body.modelVersion)
})

test('bad input is a 400 naming the field, unknown items a 404', async () => {
  let res = await fetch(`${base}/recommendations?userId=U0000005&k=0`)
  assert.equal(res.status, 400)
  assert.equal((await res.json()).field, 'k')
  res = await fetch(`${base}/recommendations?k=3`)
  assert.equal(res.status, 400)
  res = await fetch(`${base}/similar?itemId=NOPE`)
  assert.equal(res.status, 404)
})

test('a purchase posted to /events leaves the next answer', async () => {
  const first = await (await fetch(`${base}/recommendations?userId=U0000006&k=5`)).json()
  const bought = first.items[0].itemId
  const res = await fetch(`${base}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([{ userId: 'U0000006', itemId: bought, eventType: 'purchase' }]),
  })
  assert.equal(res.status, 202)
  const next = await (await fetch(`${base}/recommendations?userId=U0000006&k=5`)).json()
  assert.ok(!next.items.some((i) => i.itemId === bought))
})
