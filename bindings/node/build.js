#!/usr/bin/env node
// Builds the native addon with cargo and puts it next to this file as `index.node`.
//
//   node build.js               build (dev profile, the workspace's default) and copy
//   node build.js --release     build with the release profile
//   node build.js --addon       build the addon's crate alone (`-p techshop-recs-node`), not the
//                               whole workspace's libraries
//   node build.js --if-missing  do nothing when index.node exists
//   node build.js --dts         also regenerate index.d.ts with napi-rs's type-definition
//                               generator (needs the dev dependency @napi-rs/cli)
//   node build.js --dry-run     print the cargo command line as JSON and build nothing
//
// The npm `install` script (`npm install ./bindings/node`) is `--if-missing --release --addon`: a
// storefront gets an optimised addon and compiles only what the addon links. The tests
// (bindings/node/test.sh) build without `--addon`: `cargo build --workspace --lib`, so the addon
// shares the compiled dependencies of the rest of the workspace, with the workspace's feature set
// (`-p techshop-recs-node` alone unifies other features of shared crates and rebuilds them). No
// `--target`: the host's. The target directory is the one cargo reports (it honours
// CARGO_TARGET_DIR and .cargo/config).
'use strict'

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const CRATE = 'techshop-recs-node'
const here = __dirname
const args = new Set(process.argv.slice(2))
const out = path.join(here, 'index.node')

function libName() {
  const base = CRATE.replace(/-/g, '_')
  switch (process.platform) {
    case 'win32':
      return `${base}.dll`
    case 'darwin':
      return `lib${base}.dylib`
    default:
      return `lib${base}.so`
  }
}

async function main() {
  if (args.has('--if-missing') && fs.existsSync(out) && !args.has('--dry-run')) return
  const profile = args.has('--release') ? 'release' : 'dev'
  const meta = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: here, maxBuffer: 64 << 20 }),
  )
  const env = { ...process.env }
  let typeDefDir = null
  if (args.has('--dts')) {
    typeDefDir = fs.mkdtempSync(path.join(os.tmpdir(), 'techshop-recs-typedef-'))
    env.NAPI_TYPE_DEF_TMP_FOLDER = typeDefDir
    // napi-build reruns this crate's build (and so the type-def emitting macros) when it changes.
    env[`NAPI_FORCE_BUILD_${CRATE.replace(/-/g, '_').toUpperCase()}`] = String(Date.now())
  }
  const cargoArgs = args.has('--addon') ? ['build', '-p', CRATE, '--lib'] : ['build', '--workspace', '--lib']
  if (profile === 'release') cargoArgs.push('--release')
  if (args.has('--dry-run')) {
    console.log(JSON.stringify({ cargo: cargoArgs, profile, out }))
    return
  }
  console.error(`techshop-recs: cargo ${cargoArgs.join(' ')} (target dir ${meta.target_directory})`)
  execFileSync('cargo', cargoArgs, { cwd: here, env, stdio: 'inherit' })
  const built = path.join(meta.target_directory, profile === 'release' ? 'release' : 'debug', libName())
  // Copy to a temporary name and rename: a process that has the old addon loaded keeps its copy.
  const tmp = `${out}.tmp-${process.pid}`
  fs.copyFileSync(built, tmp)
  fs.renameSync(tmp, out)
  console.error(`techshop-recs: ${built} -> ${out}`)
  if (typeDefDir) {
    const { generateTypeDef } = await import('@napi-rs/cli')
    const { dts } = await generateTypeDef({ typeDefDir, cwd: here })
    fs.writeFileSync(path.join(here, 'index.d.ts'), dts)
    fs.rmSync(typeDefDir, { recursive: true, force: true })
    console.error('techshop-recs: wrote index.d.ts')
  }
}

main().catch((e) => {
  console.error(`techshop-recs: building the native addon failed: ${e.message}`)
  console.error('techshop-recs: it needs a Rust toolchain (cargo) and the techshop-recs workspace around this package')
  process.exit(1)
})
