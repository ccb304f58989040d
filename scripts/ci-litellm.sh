#!/usr/bin/env bash
# CI check for target mode on a real gateway: LiteLLM 1.81.3, a release that
# shipped four of our incidents, must be *caught* on each of them:
#   3-server-root-path (UI 404 under SERVER_ROOT_PATH), 4-none-params
#   (`encoding_format: null` to vLLM), 5-beta-headers (unfiltered betas to Bedrock),
#   6-malformed-cost-map (a refused start-up cost map, and not a word in its output).
# The venv is cached under ${XDG_CACHE_HOME:-~/.cache}/postmortem/litellm.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${1:-1.81.3}
OUT=$(mktemp -d)
export PM_OUT="$OUT"
export POSTMORTEM_SCENARIOS="$ROOT/scenarios/incidents"
"$ROOT/scripts/litellm-matrix.sh" "$VERSION"
python3 - "$OUT/$VERSION.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
verdicts = {}
for inc in report["incidents"]:
    verdicts.setdefault(inc["id"], []).append((inc["verdict"], inc["scenario"], inc.get("evidence")))
expected_caught = ["3-server-root-path", "4-none-params", "5-beta-headers", "6-malformed-cost-map"]
failed = False
for iid in expected_caught:
    got = [v for v, _, _ in verdicts.get(iid, [])]
    if "caught" not in got:
        print(f"FAIL: {iid} not caught on this release: {verdicts.get(iid)}")
        failed = True
    else:
        print(f"ok: {iid} caught")
sys.exit(1 if failed else 0)
PY
