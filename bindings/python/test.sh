#!/usr/bin/env bash
# Builds the Python binding into a virtual environment and runs its pytest suite and the tests of
# the Python examples (examples/airflow, examples/python).
#   TECHSHOP_PY_VENV=DIR   the venv, created when missing (default $HOME/.cache/techshop-recs-py-venv)
#   CARGO_TARGET_DIR       shared with the Rust build (default: the workspace's target/)
#   PY_PROFILE=test|release  test (default): the build settings of `cargo test` (opt-level 1, optimised
#                          dependencies), so the dependencies `cargo test --workspace` built are reused
#   PYTEST_ARGS            extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
VENV=${TECHSHOP_PY_VENV:-$HOME/.cache/techshop-recs-py-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
export PATH="$VENV/bin:$PATH"  # maturin's PEP 517 backend runs `maturin` from PATH
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  'maturin>=1.16,<2' pytest pandas pyarrow numpy matplotlib

# `pip install` through maturin's PEP 517 backend, like a user's `pip install ./bindings/python`,
# with the venv's maturin (no isolated build environment to download) and the chosen profile.
case "${PY_PROFILE:-test}" in
  # maturin runs `cargo rustc`, where `--profile test` would build a test harness: build the dev
  # profile with the test profile's opt-level instead (same artifacts as `cargo test`).
  # --strip: without it the debug-info wheel is 500 MB and zipping it takes longer than the tests.
  test) export CARGO_PROFILE_DEV_OPT_LEVEL=1 MATURIN_PEP517_ARGS="--profile dev --strip" ;;
  release) export MATURIN_PEP517_ARGS="--release" ;;
  *) echo "PY_PROFILE must be test or release, not $PY_PROFILE" >&2; exit 2 ;;
esac
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps .

cd "$ROOT"
# --import-mode=prepend (pytest's default) lets each example's test import the example next to it.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" ${PYTEST_ARGS:-} \
  ${PYTEST_PATHS:-bindings/python/tests examples/airflow examples/python}
