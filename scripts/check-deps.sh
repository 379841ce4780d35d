#!/usr/bin/env bash
# The crate boundaries of ARCHITECTURE.md ("Crates and what each may depend on"), checked on the
# resolved dependency graph (`cargo tree`, normal edges, each package with its default features):
# serving and the Node addon never link the offline pipeline, the readers it needs or burn's
# training stack, and the core links neither front. Prints each package's crate count; exits 1 naming every forbidden edge.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
# forbid "PACKAGE [CARGO TREE FLAGS]" CRATE...: none of CRATE may be in PACKAGE's normal
# dependency graph (resolved with the flags).
forbid() {
  local spec=($1)
  shift
  local pkg=${spec[0]} tree crates
  tree=$(cargo tree -p "${spec[@]}" -e normal --prefix none)
  crates=$(sed 's/ (\*)$//' <<<"$tree" | sort -u)
  echo "${spec[*]}: $(wc -l <<<"$crates") crates"
  for dep in "$@"; do
    if grep -q "^$dep v" <<<"$crates"; then
      echo "FORBIDDEN: $pkg depends on $dep:" >&2
      cargo tree -p "${spec[@]}" -e normal -i "$dep" | head -8 >&2 || true
      fail=1
    fi
  done
}

offline_pipeline=(recsys-train recsys-cli parquet arrow-array arrow-ipc arrow-csv zip indicatif)
# burn: training only (recsys-core's `training` feature); serving scores models in plain f32.
training=(burn burn-core burn-nn burn-optim burn-autodiff burn-ndarray burn-cuda cubecl)
# The HTTP service (default features: the `recsys-serve` binary) and the library alone.
forbid recsys-serve "${offline_pipeline[@]}" "${training[@]}" techshop-recs-node techshop-recs-python
forbid "recsys-serve --no-default-features" "${offline_pipeline[@]}" "${training[@]}" clap axum tokio
forbid techshop-recs-node "${offline_pipeline[@]}" "${training[@]}" techshop-recs-python pyo3 clap axum tokio
forbid recsys-core recsys-train recsys-serve recsys-cli parquet arrow-array axum tokio pyo3 napi
forbid "recsys-core --no-default-features" "${training[@]}"
forbid recsys-train recsys-serve recsys-cli axum napi pyo3
exit $fail
