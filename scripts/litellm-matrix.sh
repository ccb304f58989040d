#!/usr/bin/env bash
# litellm-matrix.sh VERSION... : run postmortem's incident scenarios against real LiteLLM releases.
#
# For each VERSION: one venv under $CACHE/VERSION with `litellm[proxy]==VERSION` (reused when it
# already passed a check), then `postmortem run --target-cmd ...` in target mode, then a table
# incident x version from the JSON reports ({"incidents":[{"id":..,"verdict":"clean|caught|not_applicable"}]}).
#
# Env knobs:
#   POSTMORTEM_BIN        harness binary            (default target/release/postmortem)
#   POSTMORTEM_SCENARIOS  scenario dir              (default scenarios/incidents)
#   POSTMORTEM_LITELLM_CACHE  venv root             (default ${XDG_CACHE_HOME:-~/.cache}/postmortem/litellm)
#   PM_PYTHON             python used for venvs     (default python3; LiteLLM 1.80-1.84 supports 3.9-3.13)
#   PM_CONSTRAINTS        optional pip constraints file (pin openai/fastapi/... for reproducibility)
#   PM_INSTALL_TIMEOUT    seconds per pip install   (default 900)
#   PM_RUN_TIMEOUT        seconds per harness run   (default 1800)
#   PM_SKIP_RUN=1         only build the venvs
#   PM_OUT                report dir                (default ./litellm-matrix-out)
set -euo pipefail

die() { echo "litellm-matrix: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: $0 VERSION... (e.g. 1.81.3 1.81.4)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${POSTMORTEM_BIN:-$ROOT/target/release/postmortem}
SCEN=${POSTMORTEM_SCENARIOS:-$ROOT/scenarios/incidents}
CACHE=${POSTMORTEM_LITELLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/postmortem/litellm}
PY=${PM_PYTHON:-python3}
OUT=${PM_OUT:-./litellm-matrix-out}
INSTALL_TIMEOUT=${PM_INSTALL_TIMEOUT:-900}
RUN_TIMEOUT=${PM_RUN_TIMEOUT:-1800}

# Refuse before touching anything: 1.82.7 and 1.82.8 were the compromised uploads of 2026-03-24.
for v in "$@"; do
  [[ "$v" =~ ^1\.[0-9]+\.[0-9]+$ ]] || die "bad version '$v' (want stable X.Y.Z, no rc/dev)"
  case "$v" in 1.82.7|1.82.8) die "refusing $v: compromised release (supply-chain attack), never install it";; esac
done

mkdir -p "$CACHE" "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${PM_CONSTRAINTS:-}" ] && PM_CONSTRAINTS=$(cd "$(dirname "$PM_CONSTRAINTS")" && pwd)/$(basename "$PM_CONSTRAINTS")

# Releases from 1.90 classify every auth failure with `import prisma` (the Python client, which
# `litellm[proxy]` does not install): without it each rejection is a 500 "Internal server error".
# The package alone is enough (no generated client, no engines, no database): rejections become the
# 401s they are. Older releases do not need it and are unaffected by it.
ensure_prisma() {  # ensure_prisma VENV
  "$1/bin/python" -c 'import prisma' 2>/dev/null && return 0
  timeout "$INSTALL_TIMEOUT" "$1/bin/pip" install --disable-pip-version-check -q prisma >>"$1/install.log" 2>&1 \
    || { echo "litellm-matrix: pip install prisma failed in $1 (see install.log)" >&2; return 1; }
}

# Vertex AI deployments need Google's auth library and, on older releases, the Vertex SDK
# (`vertexai`), neither of which `litellm[proxy]` installs: without them every Vertex scenario is
# inconclusive ("Google Cloud SDK not found"). The scenarios give LiteLLM a service account whose
# token_uri is the Vertex mock, so with the SDK installed the Vertex paths run like the others.
ensure_google() {  # ensure_google VENV
  "$1/bin/python" -c 'import google.auth, vertexai' 2>/dev/null && return 0
  timeout "$INSTALL_TIMEOUT" "$1/bin/pip" install --disable-pip-version-check -q google-cloud-aiplatform >>"$1/install.log" 2>&1 \
    || { echo "litellm-matrix: pip install google-cloud-aiplatform failed in $1 (see install.log)" >&2; return 1; }
}

# Some releases declare only a lower bound on fastapi and no longer import with the newest one pip
# picks today (1.96.2: `cannot import name 'get_flat_dependant'`): such a venv gets the lowest
# fastapi the release declares, which is what it was released against.
ensure_importable() {  # ensure_importable VENV
  local check='import litellm.proxy.proxy_server'
  LITELLM_LOCAL_MODEL_COST_MAP=True timeout 180 "$1/bin/python" -c "$check" >/dev/null 2>&1 && return 0
  local min
  min=$("$1/bin/python" - <<'PY'
import importlib.metadata as m, re
for r in m.requires("litellm") or []:
    hit = re.match(r"fastapi\s*\(?\s*(?:>=|==)\s*([0-9][0-9.]*)", r)
    if hit and "proxy" in r:
        print(hit.group(1)); break
PY
)
  [ -n "$min" ] || { echo "litellm-matrix: $1 does not import its proxy" >&2; return 1; }
  echo "litellm-matrix: $1: the proxy does not import with today's fastapi; pinning fastapi==$min" >&2
  timeout "$INSTALL_TIMEOUT" "$1/bin/pip" install --disable-pip-version-check -q "fastapi==$min" >>"$1/install.log" 2>&1
  LITELLM_LOCAL_MODEL_COST_MAP=True timeout 180 "$1/bin/python" -c "$check" >/dev/null 2>&1 \
    || { echo "litellm-matrix: $1 still does not import its proxy" >&2; return 1; }
}

ensure_venv() {  # ensure_venv VERSION -> prints venv path
  local v=$1 dir="$CACHE/$1"
  if [ -f "$dir/.ok" ] && [ -x "$dir/bin/litellm" ]; then
    ensure_prisma "$dir" && ensure_google "$dir" && ensure_importable "$dir" && echo "$dir"
    return
  fi
  rm -rf "$dir"
  echo "litellm-matrix: installing litellm[proxy]==$v into $dir" >&2
  "$PY" -m venv "$dir" >&2
  local cargs=()
  [ -n "${PM_CONSTRAINTS:-}" ] && cargs=(-c "$PM_CONSTRAINTS")
  local t0=$SECONDS
  if ! timeout "$INSTALL_TIMEOUT" "$dir/bin/pip" install --disable-pip-version-check -q \
        ${cargs[@]+"${cargs[@]}"} "litellm[proxy]==$v" >"$dir/install.log" 2>&1; then
    echo "litellm-matrix: pip install $v failed (see $dir/install.log)" >&2; return 1
  fi
  # Sanity: right version, importable proxy, and no start-up hook files (the 1.82.8 payload was a .pth).
  local got
  got=$(timeout 120 "$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))') || return 1
  [ "$got" = "$v" ] || { echo "litellm-matrix: installed $got, wanted $v" >&2; return 1; }
  if find "$dir/lib" -maxdepth 3 -name 'litellm*.pth' | grep -q .; then
    echo "litellm-matrix: unexpected litellm*.pth in $dir, refusing" >&2; return 1
  fi
  ensure_prisma "$dir" || return 1
  ensure_google "$dir" || return 1
  ensure_importable "$dir" || return 1
  echo "installed in $((SECONDS - t0))s, $(du -sh "$dir" | cut -f1)" >"$dir/.ok"
  echo "$dir"
}

# Environment for the proxy child (inherited through the harness): no DB, no remote fetches.
# The harness should override LITELLM_MODEL_COST_MAP_URL per scenario (its own 127.0.0.1 server);
# the default points at a closed local port so a scenario that forgets it never reaches GitHub.
export LITELLM_MODEL_COST_MAP_URL=${LITELLM_MODEL_COST_MAP_URL:-http://127.0.0.1:9/model_cost_map.json}
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True LITELLM_LOCAL_BLOG_POSTS=True LITELLM_LOCAL_POLICY_TEMPLATES=True
# Token counting for some models loads a tokenizer from the Hugging Face hub, retrying for ~25 s
# without a network: offline, it falls back at once (a network this machine does not have is an
# environment limit, not the gateway's behaviour).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset DATABASE_URL LITELLM_MASTER_KEY OPENAI_API_KEY ANTHROPIC_API_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
      AWS_PROFILE SERVER_ROOT_PATH HTTP_PROXY HTTPS_PROXY http_proxy https_proxy 2>/dev/null || true

declare -a DONE=()
for v in "$@"; do
  venv=$(ensure_venv "$v") || { echo "$v: install failed" >&2; continue; }
  [ "${PM_SKIP_RUN:-0}" = 1 ] && { echo "$v: venv ready at $venv ($(cat "$venv/.ok"))"; continue; }
  [ -x "$BIN" ] || die "harness binary $BIN not found (cargo build --release)"
  # LiteLLM calls load_dotenv(): run from an empty dir so a stray .env cannot leak settings in.
  work=$(mktemp -d); absbin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN"); absscen=$(cd "$SCEN" && pwd)
  echo "litellm-matrix: running scenarios against $v" >&2
  rc=0
  (cd "$work" && timeout "$RUN_TIMEOUT" "$absbin" run --root "$ROOT" \
      --target-cmd "$venv/bin/litellm --config {config} --port {port} --host 127.0.0.1 --num_workers 1" \
      "$absscen" --format json) >"$OUT/$v.json" 2>"$OUT/$v.stderr" || rc=$?
  rm -rf "$work"
  # postmortem may exit non-zero when it catches an incident; only a missing/invalid JSON is an error.
  echo "litellm-matrix: $v harness exit $rc" >&2
  DONE+=("$v")
done

[ "${PM_SKIP_RUN:-0}" = 1 ] && exit 0
[ ${#DONE[@]} -gt 0 ] || die "no version ran"

# Table: rows = incident ids (union, in first-seen order), columns = versions.
"$PY" - "$OUT" "${DONE[@]}" <<'EOF'
import json, os, sys
out, versions = sys.argv[1], sys.argv[2:]
short = {"clean": "clean", "caught": "CAUGHT", "not_applicable": "n/a", "inconclusive": "inconcl."}
cols, order = {}, []
for v in versions:
    try:
        with open(os.path.join(out, v + ".json")) as f:
            rep = json.load(f)
        cols[v] = {}
        # Several scenarios may guard one incident: caught wins, then clean.
        rank = {"CAUGHT": 4, "clean": 3, "inconcl.": 2, "n/a": 1}
        for inc in rep.get("incidents", []):
            iid = str(inc.get("id"))
            cell = short.get(inc.get("verdict"), str(inc.get("verdict")))
            if rank.get(cell, 0) > rank.get(cols[v].get(iid), 0):
                cols[v][iid] = cell
            if iid not in order:
                order.append(iid)
    except (OSError, ValueError) as e:
        cols[v] = None
        print(f"{v}: no usable JSON report ({e.__class__.__name__}); see {out}/{v}.stderr", file=sys.stderr)
w0 = max([len("incident")] + [len(i) for i in order])
ws = [max(len(v), 6) for v in versions]
print("incident".ljust(w0) + "  " + "  ".join(v.ljust(w) for v, w in zip(versions, ws)))
for iid in order:
    cells = [("ERROR" if cols[v] is None else cols[v].get(iid, "-")).ljust(w) for v, w in zip(versions, ws)]
    print(iid.ljust(w0) + "  " + "  ".join(cells))
EOF
