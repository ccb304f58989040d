#!/usr/bin/env bash
# mutants.sh [FILE...] : how much of the gateway's policy the scenario suite alone can tell apart.
#
# Runs cargo-mutants (installed if missing) over the gateway's policy and translation modules with
# the scenario suite (every scenario, every contract) as the only test: a mutant that no scenario
# or contract catches is a behaviour nobody would notice changing. Results: mutants.out/ (caught.txt,
# missed.txt, timeout.txt, unviable.txt) and a per-file kill rate on stdout. Takes about 30 s per
# mutant on 2 cores; not part of CI. docs/mutation.md records a run and explains the survivors.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
FILES=("$@")
[ ${#FILES[@]} -gt 0 ] || FILES=(src/gateway/auth.rs src/gateway/keys.rs src/gateway/routing.rs \
  src/gateway/providers/params.rs src/gateway/beta.rs)
ARGS=()
for f in "${FILES[@]}"; do ARGS+=(--file "$f"); done
OUT=${PM_MUTANTS_OUT:-$ROOT}
# `--cargo-arg` (not `-- --test scenarios`): the build step then compiles only the scenario
# target, not every test binary of the crate, which halves the time per mutant.
cargo mutants "${ARGS[@]}" --timeout 180 --output "$OUT" --cargo-arg=--test=scenarios || true
python3 - "$OUT/mutants.out" <<'PY'
import collections, os, sys
out = sys.argv[1]
rows = collections.defaultdict(collections.Counter)
for kind in ("caught", "missed", "timeout", "unviable"):
    path = os.path.join(out, kind + ".txt")
    if not os.path.exists(path):
        continue
    for line in open(path):
        rows[line.split(":", 1)[0]][kind] += 1
print(f"{'file':<40} {'caught':>6} {'missed':>6} {'timeout':>7} {'unviable':>8} {'kill rate':>9}")
for f, c in sorted(rows.items()):
    viable = c["caught"] + c["missed"] + c["timeout"]
    rate = (c["caught"] + c["timeout"]) / viable if viable else 0
    print(f"{f:<40} {c['caught']:>6} {c['missed']:>6} {c['timeout']:>7} {c['unviable']:>8} {rate:>8.0%}")
PY
