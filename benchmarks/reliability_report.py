"""Print the fault-injection results (benchmarks/results/reliability.json) as a markdown table.

.venv/bin/python benchmarks/reliability_report.py [path]
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "reliability.json"


def _pairs(values: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "-"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scenario | size | seed | faults injected | violations | load held | duration (s) |",
        "| --- | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for row in rows:
        broken = {k: v for k, v in row["violations"].items() if v}
        violations = _pairs(broken) if broken else f"0 (of {len(row['violations'])} checks)"
        lines.append(
            f"| {row['scenario']} | {row['size']:,} | {row['seed']} | {_pairs(row['faults'])} "
            f"| {violations} | {_pairs(row['load'])} | {row['duration_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    if not path.exists():
        sys.exit(f"no results yet at {path}: run RELIABILITY=1 .venv/bin/pytest tests/reliability")
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
