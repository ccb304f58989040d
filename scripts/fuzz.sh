#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...] : run each cargo-fuzz target for a bounded time (default 60 s).
#
# Targets (fuzz/fuzz_targets/): config_yaml, scenario_yaml, cassette, sse, eventstream, translate,
# beta_policy, contracts. Each corpus is seeded from the project's own files (fixtures/, scenarios/,
# snapshots/, recorded cassettes) so the fuzzer starts from real inputs. A crash leaves its input in
# fuzz/artifacts/<target>/ and this script exits non-zero; turn it into a regression test.
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Not part of CI's test run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz"
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config_yaml scenario_yaml cassette sse eventstream translate beta_policy contracts)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

seed() { # seed TARGET FILES...
  local dir="corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")" 2>/dev/null || true; done
}
seed config_yaml "$ROOT"/fixtures/litellm-configs/*.yaml "$ROOT"/fixtures/config.example.yaml
seed scenario_yaml "$ROOT"/scenarios/*/*.yaml
mapfile -t CASSETTES < <(find "$ROOT/fixtures/cassettes" -type f \( -name '*.yaml' -o -name '*.json' \))
seed cassette "${CASSETTES[@]}"
seed sse "${CASSETTES[@]}"
seed eventstream "${CASSETTES[@]}"
seed translate "$ROOT"/snapshots/*.snap
seed beta_policy "$ROOT"/fixtures/litellm/anthropic_beta_headers_config.json
seed contracts "$ROOT"/snapshots/*.snap "${CASSETTES[@]}"

status=0
printf '%-14s %10s %8s %s\n' target execs cov result
for t in "${TARGETS[@]}"; do
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    result=clean
  else
    result="CRASH (see fuzz/artifacts/$t)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  printf '%-14s %10s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "$result"
  [ "$result" = clean ] || tail -30 "$log"
  rm -f "$log"
done
exit $status
