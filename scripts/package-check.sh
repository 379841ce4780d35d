#!/usr/bin/env bash
# Packages and verifies every library crate as crates.io would receive it (`cargo package`, with the
# verification build of each .crate against the others), without publishing anything. The bindings
# are published through PyPI and npm instead (`publish = false`). Not part of the test command: the
# verification builds all dependencies again in the default dev profile (8.5 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo package -p recsys-core -p recsys-train -p recsys-serve -p recsys-cli "$@"
