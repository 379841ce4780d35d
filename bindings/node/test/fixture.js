// A small trained model, candidate store and dataset for the tests, built once with the
// `recsys-train` CLI and cached in the temp directory (keyed on the binary, so a rebuilt CLI
// rebuilds the fixture). Concurrent test processes wait on a lock directory.
'use strict'

const { execFileSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const repo = path.resolve(__dirname, '..', '..', '..')

/** The workspace's cargo target directory (CARGO_TARGET_DIR, else what cargo reports). */
function targetDir() {
  if (process.env.CARGO_TARGET_DIR) return path.resolve(process.env.CARGO_TARGET_DIR)
  const meta = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: repo, maxBuffer: 64 << 20 }),
  )
  return meta.target_directory
}

/** A debug binary of the workspace (recsys-train, recsys-serve), built when missing. */
function binary(name) {
  const bin = path.join(targetDir(), 'debug', name)
  // The `recsys-train` command is built by the recsys-cli package.
  const pkg = name === 'recsys-train' ? 'recsys-cli' : name
  if (!fs.existsSync(bin)) execFileSync('cargo', ['build', '-p', pkg, '--bin', name], { cwd: repo, stdio: 'inherit' })
  return bin
}

function run(bin, args) {
  execFileSync(bin, ['-q', ...args], { stdio: ['ignore', 'ignore', 'inherit'] })
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** `{ dir, data, registry, store }`: paths of the fixture, built on first use. */
function fixture() {
  const train = binary('recsys-train')
  const st = fs.statSync(train)
  const key = crypto.createHash('sha256').update(`${train}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 12)
  const dir = path.join(os.tmpdir(), `techshop-recs-node-fixture-${key}`)
  const f = {
    dir,
    data: path.join(dir, 'data'),
    registry: path.join(dir, 'registry'),
    store: `file:${path.join(dir, 'store')}`,
  }
  const ready = path.join(dir, 'ready')
  if (fs.existsSync(ready)) return f
  fs.mkdirSync(dir, { recursive: true })
  const lock = path.join(dir, '.lock')
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (e) {
      if (e.code !== 'EEXIST') throw e
      if (fs.existsSync(ready)) return f
      sleep(200)
    }
  }
  try {
    if (fs.existsSync(ready)) return f
    for (const p of ['raw', 'data', 'registry', 'store']) fs.rmSync(path.join(dir, p), { recursive: true, force: true })
    const raw = path.join(dir, 'raw')
    const config = path.join(dir, 'train.json')
    fs.writeFileSync(
      config,
      JSON.stringify({ embedding_dim: 64, id_dim: 32, side_dim: 8, hidden_dim: 64, epochs: 3, batch_size: 512 }),
    )
    run(train, ['generate', '--out', raw, '--users', '1500', '--items', '300', '--events-per-day', '30000', '--days', '8'])
    run(train, [
      'import',
      '--events', path.join(raw, 'events'),
      '--items', path.join(raw, 'items.parquet'),
      '--users', path.join(raw, 'users.parquet'),
      '--map', 'user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity',
      '--event-type', 'event_type',
      '--out', f.data,
    ])
    run(train, ['train', '--data', f.data, '--registry', f.registry, '--config', config, '--gates', 'off'])
    run(train, ['precompute', '--data', f.data, '--registry', f.registry, '--store', f.store, '--top', '200', '--similar', '30'])
    fs.writeFileSync(ready, new Date().toISOString())
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
  return f
}

module.exports = { fixture, binary, targetDir }
