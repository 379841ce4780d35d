// techshop-recs: the techshop-recs Rust library's online Recommender for Node.js.
// All behaviour lives in Rust (crate techshop-recs-node over recsys-serve); this file only loads
// the native addon that `node build.js` (the npm install script) put next to it.
'use strict'

const path = require('node:path')

let addon
try {
  addon = require(path.join(__dirname, 'index.node'))
} catch (e) {
  if (e.code === 'MODULE_NOT_FOUND') {
    throw new Error(
      `techshop-recs: native addon ${path.join(__dirname, 'index.node')} not built; run \`npm run build\` in ${__dirname}`,
      { cause: e },
    )
  }
  throw e
}

module.exports = addon
