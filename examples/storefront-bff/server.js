// The storefront's backend-for-frontend with recommendations embedded: one Recommender per
// process (opened at start), answers from the libuv thread pool, errors mapped from their `code`.
//
//   REGISTRY=DIR STORE=file:DIR [DATA=DIR] [PORT=3000] node server.js
//   GET /recommendations?userId=U0000001&k=10[&context=home]
//   GET /similar?itemId=P000010&k=10
//   POST /events  [{ userId, itemId, eventType }]
'use strict'

const express = require('express')
const { Recommender } = require('techshop-recs')

const STATUS = { INVALID_ARGUMENT: 400, NOT_FOUND: 404, UNAVAILABLE: 503 }

/** Maps a binding error to an HTTP answer: user errors say why, the rest stay opaque. */
function sendError(res, e) {
  const status = STATUS[e.code] ?? 500
  res.status(status).json(status < 500 ? { error: e.message, code: e.code, field: e.field } : { error: 'internal error' })
  if (status >= 500) console.error(e)
}

/** Parses an optional integer query parameter; NaN goes through and the library refuses it by name. */
function int(v) {
  return v === undefined ? undefined : Number(v)
}

/** The Express app over an opened Recommender. */
function app(rec) {
  const a = express()
  a.use(express.json({ limit: '1mb' }))
  a.get('/recommendations', async (req, res) => {
    try {
      const { userId, k, context, category } = req.query
      if (typeof userId !== 'string') return res.status(400).json({ error: 'userId is required', field: 'userId' })
      res.json(await rec.recommend(userId, { k: int(k), context, category }))
    } catch (e) {
      sendError(res, e)
    }
  })
  a.get('/similar', async (req, res) => {
    try {
      if (typeof req.query.itemId !== 'string') return res.status(400).json({ error: 'itemId is required', field: 'itemId' })
      res.json(await rec.similar(req.query.itemId, { k: int(req.query.k) }))
    } catch (e) {
      sendError(res, e)
    }
  })
  a.post('/events', async (req, res) => {
    try {
      res.status(202).json({ accepted: await rec.ingest(req.body) })
    } catch (e) {
      sendError(res, e)
    }
  })
  a.get('/health', (_req, res) => res.json(rec.status()))
  return a
}

/** Opens the recommender and listens; resolves to the http.Server once it listens. */
async function start({ registry, store, data, port = 3000, config } = {}) {
  const rec = await Recommender.open(registry, { store, data, config })
  return new Promise((resolve) => {
    const server = app(rec).listen(port, '127.0.0.1', () => resolve(server))
  })
}

module.exports = { app, start }

if (require.main === module) {
  start({
    registry: process.env.REGISTRY,
    store: process.env.STORE,
    data: process.env.DATA,
    port: Number(process.env.PORT ?? 3000),
  }).then(
    (s) => console.log(`listening on http://127.0.0.1:${s.address().port}`),
    (e) => {
      console.error(`cannot start: ${e.message}`)
      process.exit(1)
    },
  )
}
