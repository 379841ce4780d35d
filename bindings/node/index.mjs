// techshop-recs as an ES module: `import { Recommender } from 'techshop-recs'`. The CommonJS entry
// (index.js) loads the native addon; this file re-exports its names, which Node cannot see
// statically through `module.exports = addon`.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const addon = require('./index.js')

export const { Recommender } = addon
export default addon
