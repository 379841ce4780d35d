#!/usr/bin/env bash
# Refreshes the vendored RustSec advisories in .ci/advisory-db from a full checkout of
# https://github.com/rustsec/advisory-db (the one step that needs the network beyond the package
# registries): keeps the advisories of every crate named in Cargo.lock and fuzz/Cargo.lock, and
# the `rust/` (standard library) ones. Run it after adding a dependency, and now and then.
#
#   git clone https://github.com/rustsec/advisory-db /tmp/advisory-db
#   scripts/update-advisories.sh /tmp/advisory-db
set -euo pipefail
cd "$(dirname "$0")/.."
FULL=${1:?usage: scripts/update-advisories.sh PATH_TO_ADVISORY_DB_CHECKOUT}
OUT=.ci/advisory-db
rm -rf "$OUT"
mkdir -p "$OUT/crates"
cp -r "$FULL/rust" "$OUT/rust"
python3 - "$FULL" "$OUT" Cargo.lock fuzz/Cargo.lock <<'PY'
import os, re, shutil, sys
full, out, *locks = sys.argv[1:]
names = set()
for lock in locks:
    names |= set(re.findall(r'^name = "([^"]+)"', open(lock).read(), re.M))
kept = 0
for name in sorted(names):
    src = os.path.join(full, "crates", name)
    if os.path.isdir(src):
        shutil.copytree(src, os.path.join(out, "crates", name))
        kept += 1
print(f"{kept} of {len(names)} crates have advisories", file=sys.stderr)
PY
commit=$(git -C "$FULL" log -1 --format='%H %cs' 2>/dev/null || echo unknown)
cat > "$OUT/SNAPSHOT" <<TXT
RustSec advisory-db at $commit, the advisories of the crates in Cargo.lock and fuzz/Cargo.lock
(scripts/update-advisories.sh; scripts/audit.sh reads it without the network).
TXT
