#!/usr/bin/env python3
"""matrix-table.py DIR : the README's contract x release tables from litellm-matrix.sh's JSON reports.

DIR holds one `VERSION.json` per release (`postmortem run --format json`). Prints, as Markdown:
1. each contract's count of violating exchanges per release (distinct scenario steps; `·` for none);
2. conformance and fault-matrix scenarios passed / failed / inconclusive per release;
3. one row per fault-matrix scenario: `✗` a step's own expectation failed, `c` only a contract
   broke, `·` passed, `i` inconclusive.
Only what the reports say: a release without a report is left out.
"""
import collections
import glob
import json
import os
import sys


def version_key(path):
    return [int(x) for x in os.path.basename(path)[: -len(".json")].split(".")]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    reports = {}
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")), key=version_key):
        try:
            reports[os.path.basename(path)[: -len(".json")]] = json.load(open(path))
        except (OSError, ValueError) as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
    versions = list(reports)
    if not versions:
        sys.exit("no reports")

    counts = collections.defaultdict(dict)
    for v, r in reports.items():
        for c in r.get("contracts", []):
            # Exchanges, not messages: one exchange may break a contract in
            # several places (three events of one stream), and counts one.
            counts[c["contract"]][v] = len({(x["scenario"], x["step"]) for x in c.get("violations", [])})
    head = "| contract | " + " | ".join(versions) + " |"
    rule = "|---|" + "---|" * len(versions)
    print(head)
    print(rule)
    for contract in sorted(counts):
        cells = [f"**{counts[contract][v]}**" if counts[contract].get(v) else "·" for v in versions]
        print(f"| `{contract}` | " + " | ".join(cells) + " |")

    def family(s):
        return "fault matrix" if s["name"].startswith("fault-") else "conformance"

    for fam in ("conformance", "fault matrix"):
        for verdict in ("passed", "failed", "inconclusive"):
            cells = []
            for v in versions:
                n = sum(1 for s in reports[v]["scenarios"] if family(s) == fam and s["verdict"] == verdict)
                cells.append(str(n))
            print(f"| {fam}: {verdict} | " + " | ".join(cells) + " |")

    faults = sorted({s["name"] for r in reports.values() for s in r["scenarios"] if s["name"].startswith("fault-")})
    if faults:
        print()
        print("| fault | " + " | ".join(versions) + " |")
        print(rule)
        for name in faults:
            cells = []
            for v in versions:
                s = next((s for s in reports[v]["scenarios"] if s["name"] == name), None)
                if s is None:
                    cells.append("")
                elif s["verdict"] == "inconclusive":
                    cells.append("i")
                elif s.get("failure"):
                    cells.append("**✗**")
                elif s.get("violations") or s["verdict"] == "failed":
                    cells.append("**c**")
                else:
                    cells.append("·")
            print(f"| {name[len('fault-'):]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
