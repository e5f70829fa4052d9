#!/usr/bin/env bash
# Soak under upstream faults: DURATION seconds (default 60) of chat completions at
# RATE requests/s (default 600) through `triage serve` (release build, its own data
# directory, semantic cache and decision log on, the embedding memo at its default
# so repeated prompts are cheap) against `triage fake-upstream --fault-rate 0.1`,
# which serves both OpenAI's and Anthropic's protocols; every tier falls back from
# one provider to the other. Prompts come from benches/short_prompts.txt; half the
# requests stream. Each request carries `temperature: 0` and one of SCOPES `seed`
# values (each its own cache scope), so most go upstream and meet its faults while
# repeats are served from the cache.
#
# Reports requests/s, outcomes by HTTP status and triage error code, p50/p99
# latency, triage's RSS at start and end, and the faults the fake injected. Then it
# stops triage with SIGTERM and asserts:
#   - triage exited cleanly;
#   - every answer was clean (whole, an OpenAI error, or a stream ending in an
#     OpenAI error event) and every response carried x-triage-request-id;
#   - the decision log has exactly one row per response the load generator got;
#   - no cache hit, during the load or when every request whose answer was not
#     whole is sent again afterwards, served an incomplete answer, and every entry
#     of the cache on disk holds the whole answer (tests/soak_cache.rs);
#   - the achieved rate is at least MIN_RPS (default 500).
# Exits non-zero when one fails.
#
# Usage: scripts/soak.sh [DURATION]; RATE, CONCURRENCY (connections, default 128),
# FAULT_RATE, SEED, SCOPES, MIN_RPS, PORT, UP_PORT override the defaults.
# KEEP=1 keeps the working directory (data, logs, JSON summaries).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-60}"
RATE="${RATE:-600}"
CONCURRENCY="${CONCURRENCY:-128}"
FAULT_RATE="${FAULT_RATE:-0.1}"
SEED="${SEED:-1}"
SCOPES="${SCOPES:-200}"
MIN_RPS="${MIN_RPS:-500}"
UP_PORT="${UP_PORT:-18190}"
PORT="${PORT:-18191}"
ADMIN_KEY="soak-admin-$$"

echo "building (release) ..."
cargo build --release --quiet
# The cache check at the end reads the cache through triage's own loader.
cargo test --release --quiet --test soak_cache --no-run 2>/dev/null

DIR="$(mktemp -d)"
cat >"$DIR/triage.toml" <<TOML
data_dir = "$DIR/data"
[server]
listen = "127.0.0.1:$PORT"
admin_key_env = "TRIAGE_SOAK_ADMIN_KEY"
[cache]
enabled = true
[ledger]
enabled = true
[[upstreams]]
name = "fake-openai"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"
request_timeout_secs = 2      # a hung attempt is given up after 2 s
max_retries = 2
backoff_base_ms = 50
backoff_max_ms = 500          # Retry-After: 1 is longer: the next model is tried
[[upstreams]]
name = "fake-anthropic"
kind = "anthropic"
base_url = "http://127.0.0.1:$UP_PORT/v1"
request_timeout_secs = 2
max_retries = 2
backoff_base_ms = 50
backoff_max_ms = 500
[[models]]
name = "gpt-4o-mini"
upstream = "fake-openai"
[[models]]
name = "gpt-4.1"
upstream = "fake-openai"
[[models]]
name = "claude-haiku-4-5"
upstream = "fake-anthropic"
[[models]]
name = "claude-sonnet-4-5"
upstream = "fake-anthropic"
[router.tiers]
SIMPLE = ["gpt-4o-mini", "claude-haiku-4-5"]
MODERATE = ["claude-haiku-4-5", "gpt-4o-mini"]
COMPLEX = ["claude-sonnet-4-5", "gpt-4.1"]
TOML

UP=""
SRV=""
SAMPLER=""
cleanup() {
  for p in $SAMPLER $SRV $UP; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

./target/release/triage fake-upstream --listen "127.0.0.1:$UP_PORT" \
  --fault-rate "$FAULT_RATE" --seed "$SEED" 2>"$DIR/fake.log" &
UP=$!
TRIAGE_SOAK_ADMIN_KEY="$ADMIN_KEY" ./target/release/triage --config "$DIR/triage.toml" serve \
  2>"$DIR/serve.log" &
SRV=$!
ready=0
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && curl -sf "http://127.0.0.1:$UP_PORT/stats" >/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "triage or the fake upstream did not start:" >&2
  cat "$DIR/serve.log" "$DIR/fake.log" >&2
  exit 1
fi
ANSWER="$(curl -sf "http://127.0.0.1:$UP_PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["answer"])')"

rss() { awk '/VmRSS/ {print $2}' "/proc/$SRV/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$SRV/status"; }
RSS_START="$(rss)"
# RSS (kB) and threads every 5 s while the load runs.
( t=0; while kill -0 "$SRV" 2>/dev/null; do sleep 5; t=$((t + 5)); echo "$t $(rss) $(threads)"; done ) >"$DIR/rss.log" 2>/dev/null &
SAMPLER=$!

echo "soaking for ${DURATION} s at ${RATE} requests/s offered (${CONCURRENCY} connections), fault rate ${FAULT_RATE}, seed ${SEED} ..."
python3 scripts/soakload.py --url "http://127.0.0.1:$PORT" --duration "$DURATION" \
  --rate "$RATE" --concurrency "$CONCURRENCY" --prompts benches/short_prompts.txt \
  --scopes "$SCOPES" --answer "$ANSWER" --seed "$SEED" \
  --out "$DIR/load.json" --ids "$DIR/ids.txt" >/dev/null

RSS_END="$(rss)"
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
curl -sf "http://127.0.0.1:$UP_PORT/stats" >"$DIR/fake-stats.json"
curl -sf -H "authorization: Bearer $ADMIN_KEY" "http://127.0.0.1:$PORT/admin/cache/stats" >"$DIR/cache-stats.json"
curl -sf "http://127.0.0.1:$PORT/metrics" >"$DIR/metrics.txt"

# Stop triage cleanly: it drains, flushes the decision log and snapshots the cache.
kill -TERM "$SRV"
SRV_STATUS=0
wait "$SRV" || SRV_STATUS=$?
SRV=""
kill -TERM "$UP"
wait "$UP" || true
UP=""

set +e
SOAK_CACHE_DIR="$DIR/data/cache" SOAK_ANSWER="$ANSWER" \
  cargo test --release --quiet --test soak_cache -- --ignored --nocapture >"$DIR/cache-check.txt" 2>&1
CACHE_STATUS=$?
set -e

python3 - "$DIR" "$SRV_STATUS" "$CACHE_STATUS" "$RSS_START" "$RSS_END" "$MIN_RPS" <<'PY'
import json, re, sqlite3, sys
d, srv_status, cache_status, rss0, rss1, min_rps = sys.argv[1:7]
cache_out = open(f"{d}/cache-check.txt").read()
load = json.load(open(f"{d}/load.json"))
fake = json.load(open(f"{d}/fake-stats.json"))
cstats = json.load(open(f"{d}/cache-stats.json"))["stats"]
metrics = open(f"{d}/metrics.txt").read()
ids = [l for l in open(f"{d}/ids.txt").read().split() if l]

def metric(name):
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)

db = sqlite3.connect(f"{d}/data/decisions.sqlite")
integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
row_ids = [r[0] for r in db.execute("SELECT id FROM decisions")]
rows = len(row_ids)
row_set = set(row_ids)
missing = [i for i in ids if i not in row_set]
extra = len(row_set - set(ids))
dup_ids = len(ids) - len(set(ids))
with_error = db.execute("SELECT count(*) FROM decisions WHERE error IS NOT NULL").fetchone()[0]
m = re.search(r"soak-cache: (\d+) entries, (\d+) not whole", cache_out)
entries, torn = (int(m.group(1)), int(m.group(2))) if m else (None, None)

W = 44
def row(k, v):
    print(f"  {k:<{W}} {v}")
print()
print("== soak ==")
row("duration", f"{load['duration_s']} s")
row("requests (load phase)", f"{load['requests']} ({load['streams']} streams)")
row("requests/s", f"{load['requests_per_s']} (offered {load['offered_per_s']}, {load['connections']} connections)")
row("latency p50 / p90 / p99 / max (all)", " / ".join(f"{load['latency_ms'][k]} ms" for k in ("p50", "p90", "p99", "max")))
row("latency p50 / p99 (whole answers)", f"{load['latency_ok_ms']['p50']} ms / {load['latency_ok_ms']['p99']} ms")
row("triage RSS start / end", f"{int(rss0)//1024} MiB / {int(rss1)//1024} MiB")
samples = [l.split() for l in open(f"{d}/rss.log").read().splitlines() if len(l.split()) == 3]
if samples:
    row("triage RSS every 5 s (MiB)", " ".join(str(int(s[1]) // 1024) for s in samples))
    row("triage threads every 5 s", " ".join(s[2] for s in samples))
row("sends late (all connections busy) / p99 lag", f"{load['late_sends']} / {load['send_lag_p99_ms']} ms")
print("-- outcomes (HTTP status + triage error code) --")
for k, v in load["outcomes"].items():
    row(k, v)
print("-- x-triage-cache --")
for k, v in sorted(load["cache"].items()):
    row(k, v)
print("-- faults injected by the fake upstream --")
row("upstream requests (OpenAI / Anthropic / streams)", f"{fake['requests']} ({fake['openai']} / {fake['anthropic']} / {fake['streams']})")
for k, v in fake["faults"].items():
    row(k, v)
row("total", f"{fake['faults_total']} ({100*fake['faults_total']/max(1,fake['requests']):.1f}% of upstream requests)")
print("-- triage --")
row("upstream retries / fallbacks", f"{metric('triage_upstream_retries_total')} / {metric('triage_fallbacks_total')}")
row("decision-log rows dropped", metric("triage_ledger_dropped_total"))
row("decision-log rows / with an error", f"{rows} / {with_error}")
row("cache entries / inserts / hits (stats)", f"{cstats['entries']} / {cstats['inserts']} / {cstats['hits']}")
print("-- after the load --")
row("replayed (answers not whole, sent again)", load["replayed"])
for k, v in load["replay_outcomes"].items():
    row("  " + k, v)

checks = []
def check(name, ok, detail):
    checks.append((name, ok, detail))
check("triage exited cleanly on SIGTERM", srv_status == "0", f"exit {srv_status}")
check("every answer clean", load["unclean"] == 0, f"{load['unclean']} unclean")
check("every response has a request id", load["responses_with_id"] == load["requests"] + load["replayed"] - load["client_failures"],
      f"{load['responses_with_id']} ids")
check("no client-side failures", load["client_failures"] == 0, f"{load['client_failures']}")
check("decision log integrity_check", integrity == "ok", integrity)
check("one row per response (ids all logged once)", not missing and dup_ids == 0 and extra <= load["client_failures"],
      f"{rows} rows, {len(ids)} ids, {len(missing)} missing, {extra} extra, {dup_ids} duplicate ids")
check("no hit served an incomplete answer", load["bad_hits"] == 0, f"{load['bad_hits']} bad hits")
check("every cache entry on disk is whole", cache_status == "0" and torn == 0,
      f"{entries} entries, {torn} not whole" if entries is not None else cache_out[-400:])
check(f"requests/s >= {min_rps}", load["requests_per_s"] >= float(min_rps), f"{load['requests_per_s']}")
print("== checks ==")
for name, ok, detail in checks:
    print(f"  {'PASS' if ok else 'FAIL'}  {name:<{W}} {detail}")
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
PY
