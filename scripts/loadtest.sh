#!/usr/bin/env bash
# Load test: the same chat completion request sent straight to a fast local
# upstream ("direct") and through the gateway, in the same run, with wrk at
# concurrency 1 (1 thread) and 32 (2 threads). Prints a markdown table of
# p50/p99 latency, the latency the gateway adds (gateway minus direct), and
# the gateway's throughput as a ratio of direct.
#
# Everything runs on 127.0.0.1 and every wrk run is bounded.
#
#   scripts/loadtest.sh                # 10 s per run
#   DURATION=3 scripts/loadtest.sh     # seconds per run
#
# Builds `postmortem` in release mode (the upstream is its hidden
# `bench-upstream` command, the one `postmortem bench` starts) and installs the Debian package `wrk` with apt-get if it is missing.
# Honours CARGO_TARGET_DIR. Progress goes to stderr, the table to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
if ! [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || ((DURATION > 600)); then
  echo "error: DURATION must be whole seconds between 1 and 600, got '$DURATION'" >&2
  exit 2
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LUA="$ROOT/scripts/loadtest.lua"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  # Only the processes this script started, by pid.
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "loadtest: $*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (Debian package)"
  SUDO=""
  [[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq wrk >&2
fi

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet --bin postmortem) >&2

# start NAME CMD...: runs CMD in the background and sets URL to the
# `listening on http://ADDR` it prints. (Not a $(subshell): PIDS must stick.)
URL=""
start() {
  local name="$1"
  shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
  for _ in $(seq 1 300); do
    URL="$(grep -o 'listening on http://[0-9.:]*' "$WORK/$name.out" | head -n1 | sed 's/^listening on //' || true)"
    [[ -n "$URL" ]] && return 0
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
      log "$name exited before listening:"
      cat "$WORK/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  log "$name did not start within 30 s"
  exit 1
}

start upstream "$TARGET_DIR/release/postmortem" bench-upstream --port 0
UPSTREAM="$URL"
UPSTREAM_KEY="loadtest-upstream-key"
VIRTUAL_KEY="sk-loadtest-virtual-key-0001"
cat >"$WORK/config.yaml" <<YAML
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "$UPSTREAM/v1", api_key: $UPSTREAM_KEY}
general_settings: {master_key: loadtest-master-key}
keys:
  - key: $VIRTUAL_KEY
    models: ["openai/*", "gpt-4o"]
YAML
# Warnings only: per-request logging is not what is being measured.
RUST_LOG=warn start gateway "$TARGET_DIR/release/postmortem" serve --config "$WORK/config.yaml" --port 0
GATEWAY="$URL"
log "upstream $UPSTREAM, gateway $GATEWAY"

export LOADTEST_BODY='{"model":"gpt-4o","messages":[{"role":"system","content":"You are a concise assistant for a CI dashboard."},{"role":"user","content":"Summarize the last build: 214 tests, 0 failures, 3 skipped, 41 s."}],"temperature":0.2,"max_tokens":256}'

# Fail fast on a broken setup rather than measure error responses.
for target in "$UPSTREAM|Bearer $UPSTREAM_KEY" "$GATEWAY|Bearer $VIRTUAL_KEY"; do
  curl -sf --max-time 10 -H "Content-Type: application/json" -H "Authorization: ${target#*|}" \
    -d "$LOADTEST_BODY" "${target%%|*}/v1/chat/completions" >/dev/null \
    || { log "${target%%|*} did not answer 200"; exit 1; }
done

UPSTREAM_PID="${PIDS[0]}"
GATEWAY_PID="${PIDS[1]}"
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# CPU time (user + system) a process has used so far, in microseconds.
# Fields 14 and 15 of /proc/PID/stat; both names have no spaces.
cpu_us() { awk -v t="$TICK_US" '{ print ($14 + $15) * t }' "/proc/$1/stat"; }

# run LABEL URL AUTH CONNECTIONS THREADS SECONDS: prints the LOADTEST_RESULT
# fields, then the CPU microseconds the upstream and the gateway used.
run() {
  local out="$WORK/$1.wrk" up0 gw0
  up0="$(cpu_us "$UPSTREAM_PID")"
  gw0="$(cpu_us "$GATEWAY_PID")"
  LOADTEST_AUTH="$3" timeout $(($6 + 30)) \
    wrk -t"$5" -c"$4" -d"$6s" --timeout 5s --latency -s "$LUA" "$2/v1/chat/completions" >"$out"
  echo "$(grep '^LOADTEST_RESULT' "$out" | sed 's/^LOADTEST_RESULT //')" \
    "up_cpu_us=$(($(cpu_us "$UPSTREAM_PID") - up0))" "gw_cpu_us=$(($(cpu_us "$GATEWAY_PID") - gw0))"
}

log "warming up (2 s each)"
run warm-direct "$UPSTREAM" "Bearer $UPSTREAM_KEY" 32 2 2 >/dev/null
run warm-gateway "$GATEWAY" "Bearer $VIRTUAL_KEY" 32 2 2 >/dev/null

ROWS=()
for conc in 1 32; do
  threads=1
  ((conc > 1)) && threads=2
  log "concurrency $conc: direct, ${DURATION} s"
  direct="$(run "direct-$conc" "$UPSTREAM" "Bearer $UPSTREAM_KEY" "$conc" "$threads" "$DURATION")"
  log "concurrency $conc: gateway, ${DURATION} s"
  gateway="$(run "gateway-$conc" "$GATEWAY" "Bearer $VIRTUAL_KEY" "$conc" "$threads" "$DURATION")"
  ROWS+=("$conc $threads $direct $gateway")
done

echo "Load test $(date -u +%Y-%m-%d), $(nproc) cores, ${DURATION} s per run, wrk on the same machine"
echo
echo "| concurrency (threads) | p50 direct | p50 gateway | added p50 | p99 direct | p99 gateway | added p99 | req/s direct | req/s gateway | gateway/direct | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
# Each row: conc threads, then the key=value fields of the direct run and of
# the gateway run (p50 p99 requests duration errors non2xx up_cpu gw_cpu).
values() { echo "$1" | tr ' ' '\n' | sed 's/^[a-z0-9_]*=//' | paste -sd' '; }
for row in "${ROWS[@]}"; do
  values "$row" | awk '{
    drps = $5 / ($6 / 1e6); grps = $13 / ($14 / 1e6)
    printf "| %d (%d) | %d µs | %d µs | %d µs | %d µs | %d µs | %d µs | %.0f | %.0f | %.0f%% | %d / %d |\n",
      $1, $2, $3, $11, $11 - $3, $4, $12, $12 - $4, drps, grps, 100 * grps / drps, $7 + $8, $15 + $16
  }'
done
echo
echo "CPU time per request (user + system, from /proc; ${TICK_US} µs resolution over the whole run):"
echo
echo "| concurrency | upstream, direct | upstream, via gateway | gateway |"
echo "|---|---|---|---|"
for row in "${ROWS[@]}"; do
  values "$row" | awk '{
    printf "| %d | %.1f µs | %.1f µs | %.1f µs |\n", $1, $9 / $5, $17 / $13, $18 / $13
  }'
done
