"""Run every benchmarks/bench_*.py module's ``main(small)``: full size by default, CI sizes
with --small. Each module prints its own table, floor and ratios."""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="CI-sized runs")
    parser.add_argument("only", nargs="*", help="run only these modules (e.g. bench_exports)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    failures = 0
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem not in args.only:
            continue
        print(f"== {path.stem}", flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        started = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            module.main(small=args.small)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures += 1
            print(f"{path.stem} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
