"""The results file scenarios append to, one row per scenario, size and seed:
``benchmarks/results/reliability.json`` (not versioned; ``benchmarks/reliability_report.py``
prints it as a table)."""

import fcntl
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"


def result_append(
    *,
    scenario: str,
    size: int,
    seed: int,
    faults: dict[str, int],
    violations: dict[str, int],
    load: dict[str, float],
    duration_s: float,
    path: Path | None = None,
) -> dict:
    """Append one result row; ``faults`` counts what was injected (e.g. ``{"kill_children": 3}``),
    ``violations`` the oracle's counts, ``load`` what was held (e.g. ``{"items_per_s": 210}``)."""
    path = path or Path(os.environ.get("RELIABILITY_RESULTS") or RESULTS)
    row = {
        "scenario": scenario,
        "size": size,
        "seed": seed,
        "faults": faults,
        "violations": violations,
        "load": {k: round(v, 2) for k, v in load.items()},
        "duration_s": round(duration_s, 1),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # scenarios may run in parallel pytest workers
        f.seek(0)
        text = f.read()
        rows = json.loads(text) if text.strip() else []
        rows.append(row)
        f.seek(0)
        f.truncate()
        json.dump(rows, f, indent=1)
    return row
