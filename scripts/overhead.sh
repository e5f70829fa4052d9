#!/usr/bin/env bash
# Sidecar overhead: chat completions through `triage serve` against a zero-latency
# fake upstream (`triage fake-upstream`) on loopback. The server's Server-Timing
# header splits each request into the embedding, the upstream wait and everything
# else triage does (parsing, routing policy, cache lookup, budgets, ledger,
# forwarding, serialization): that last part is its overhead.
# Usage: scripts/overhead.sh [DURATION] [CONCURRENCY]; PROMPTS=FILE picks the
# prompts (default: benches/short_prompts.txt), API=chat|messages|responses the
# inbound API (default chat; the provider always speaks chat completions, so
# messages and responses include the translation both ways), TRIAGE=BIN another
# build to measure (default: this tree's release build).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20s}"
CONCURRENCY="${2:-4}"
PROMPTS="${PROMPTS:-benches/short_prompts.txt}"
UP_PORT="${UP_PORT:-18090}"
PORT="${PORT:-18091}"
API="${API:-chat}"
TRIAGE="${TRIAGE:-./target/release/triage}"
[ "$TRIAGE" = ./target/release/triage ] && cargo build --release --quiet
DIR="$(mktemp -d)"
cat >"$DIR/triage.toml" <<TOML
data_dir = "$DIR/data"
[server]
listen = "127.0.0.1:$PORT"
[embed]
memo_entries = 0   # every request really embedded: the overhead is measured under load
[[upstreams]]
name = "fake"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"
api_key_env = "TRIAGE_FAKE_KEY"
[[models]]
name = "gpt-4o-mini"
upstream = "fake"
[[models]]
name = "gpt-4.1-mini"
upstream = "fake"
[[models]]
name = "gpt-4.1"
upstream = "fake"
[router.tiers]
SIMPLE = ["gpt-4o-mini"]
MODERATE = ["gpt-4.1-mini"]
COMPLEX = ["gpt-4.1"]
TOML
export TRIAGE_FAKE_KEY=unused
"$TRIAGE" fake-upstream --listen "127.0.0.1:$UP_PORT" 2>/dev/null &
UP=$!
"$TRIAGE" --config "$DIR/triage.toml" serve 2>"$DIR/serve.log" &
SRV=$!
trap 'kill $UP $SRV 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.1
done
API_FLAG=()
[ "$API" != chat ] && API_FLAG=(--api "$API")
./target/release/triage bench --url "http://127.0.0.1:$PORT" --chat "${API_FLAG[@]}" \
  --prompts "$PROMPTS" --concurrency "$CONCURRENCY" --duration "$DURATION"
