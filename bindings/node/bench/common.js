// What the benchmarks in this folder share: their `--key value` options and the recommender they
// time (the given model, store and data, or the test fixture), with the response cache off.
'use strict'

const { Recommender } = require('..')

/** The `--key value` pairs of the command line; exits with status 2 and `usage` otherwise. */
function options(usage) {
  const kv = {}
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      console.error(`usage: ${usage}`)
      process.exit(2)
    }
    kv[argv[i].slice(2)] = argv[i + 1]
  }
  return kv
}

/**
 * `{ rec, users }`: the recommender of `--registry/--store` (else the test fixture's; features from
 * the store, or `--data` with an addon built with the `dataset` feature) and its user count.
 */
async function open(kv) {
  let { registry, store, data } = kv
  let users = Number(kv.users ?? 1500)
  if (!registry) {
    ;({ registry, store } = require('../test/fixture.js').fixture())
    users = 1500
  }
  const rec = await Recommender.open(registry, { store, data, config: { cache: { capacity: 0 } } })
  return { rec, users }
}

module.exports = { options, open }
