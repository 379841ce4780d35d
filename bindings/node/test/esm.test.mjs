// The package's two entry points: `import` (index.mjs) and `require` (index.js) give the same
// addon, by package name as a user's code names it.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import techshop, { Recommender } from 'techshop-recs'

const require = createRequire(import.meta.url)

test('ESM named and default imports and CommonJS require give the same Recommender', () => {
  assert.equal(typeof Recommender, 'function')
  assert.equal(techshop.Recommender, Recommender)
  assert.equal(require('techshop-recs').Recommender, Recommender)
  assert.equal(require('..').Recommender, Recommender)
})

test('npm install builds the addon alone, in release', async () => {
  const { execFileSync } = await import('node:child_process')
  const { readFileSync } = await import('node:fs')
  const here = new URL('..', import.meta.url)
  const pkg = JSON.parse(readFileSync(new URL('package.json', here)))
  const script = pkg.scripts.install.split(' ')
  assert.deepEqual(script.slice(0, 2), ['node', 'build.js'])
  const plan = JSON.parse(execFileSync('node', [...script.slice(1), '--dry-run'], { cwd: here }).toString())
  assert.deepEqual(plan.cargo, ['build', '-p', 'techshop-recs-node', '--lib', '--release'])
  assert.equal(plan.profile, 'release')
})
