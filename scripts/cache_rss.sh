#!/bin/bash
# RSS of `triage serve --dry-run` (model loaded) with N synthetic cache entries,
# read from /proc once the cache indexes are linked.
# usage: scripts/cache_rss.sh [COUNT] [TEXT_BYTES] [ANSWER_BYTES]   (needs a release build)
set -euo pipefail
COUNT=${1:-100000}
TEXT=${2:-0}
ANSWER=${3:-0}
PORT=${PORT:-18990}
B=./target/release/triage
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
if [ "$COUNT" -gt 0 ]; then
  "$B" --data-dir "$D" cache fill --dir "$D/cache" --count "$COUNT" \
    --text-bytes "$TEXT" --answer-bytes "$ANSWER" >/dev/null
fi
RUST_LOG=info "$B" --data-dir "$D" serve --dry-run --listen "127.0.0.1:$PORT" 2>"$D/serve.log" &
PID=$!
for _ in $(seq 1 600); do
  grep -q "cache indexes ready" "$D/serve.log" && break
  sleep 0.5
done
sleep 2
echo "entries $COUNT, text $TEXT B, answer $ANSWER B: $(grep -E 'VmRSS|VmHWM' /proc/$PID/status | tr -s ' \t\n' ' ')"
kill "$PID"
wait "$PID" 2>/dev/null || true
