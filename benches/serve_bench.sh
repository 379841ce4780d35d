# Sourced by the benches that load a running recsys-serve (overload.sh, soak.sh), from the
# repository root, with QS (a quickstart directory) set:
#   - the release binaries (release_bins.sh: SERVE, LOAD, TRAIN);
#   - the quickstart's registry and store in QS, made (release) when missing;
#   - ON_SERVER / ON_LOAD: with two CPUs or more and PIN=1 (the default), `taskset -c 0` for the
#     server and `taskset -c 1` for the load, so that the generator does not take the server's CPU;
#   - OUT, a temporary directory removed on exit (background jobs killed);
#   - start_serve CONFIG_FILE: starts recsys-serve on QS with that config on a free port, waits
#     until it listens, sets PID and URL.
ON_SERVER=(); ON_LOAD=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  ON_SERVER=(taskset -c 0); ON_LOAD=(taskset -c 1)
fi
# shellcheck source=benches/release_bins.sh
source benches/release_bins.sh
if [ ! -d "$QS/store" ]; then
  ./examples/quickstart.sh "$QS" >/dev/null
fi
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
start_serve() { # config-file
  "${ON_SERVER[@]}" "$SERVE" --registry "$QS/registry" --store "file:$QS/store" --config "$1" \
    --listen 127.0.0.1:0 >"$OUT/serve.out" 2>"$OUT/serve.err" &
  PID=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break; sleep 0.2; done
  URL=$(sed -n 's/^listening on //p' "$OUT/serve.out")
  [ -n "$URL" ] || { cat "$OUT/serve.err" >&2; exit 1; }
}
