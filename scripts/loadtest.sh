#!/usr/bin/env bash
# Load test: 60 s of short chat requests through `triage serve --dry-run` on
# loopback (routing for every request, no upstream), with wrk from Debian
# (`apt-get install wrk`). Reports throughput, latency, errors and the server's
# RSS before and after. Usage: scripts/loadtest.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-60s}"
CONNECTIONS="${2:-64}"
PORT="${PORT:-18080}"
cargo build --release --quiet
./target/release/triage serve --dry-run --listen "127.0.0.1:$PORT" 2>/tmp/triage-loadtest.log &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }
echo "RSS before: $(rss)"
# RSS every 10 s while wrk runs: bounded structures (memo, sticky-tier map, cache)
# fill up and then stay flat.
( while kill -0 $PID 2>/dev/null; do sleep 10; echo "RSS at +$((SECONDS))s: $(rss)"; done ) &
SAMPLER=$!
SECONDS=0
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/loadtest.lua "http://127.0.0.1:$PORT" | tee /tmp/triage-wrk.txt
kill $SAMPLER 2>/dev/null || true
echo "RSS after:  $(rss)"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^triage_embed_queue_depth' || true
