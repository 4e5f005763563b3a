"""Run every benchmark: ``python benchmarks/run.py [--small]``.

Imports each ``benchmarks/bench_*.py`` and calls its ``main(small: bool)``; a benchmark that
raises fails the run (after the others have run).
"""

import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))


def main() -> int:
    small = "--small" in sys.argv[1:]
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        print(f"\n== {path.stem} ({'small' if small else 'full'} size)", flush=True)
        started = time.perf_counter()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            module.main(small=small)
        except Exception:
            traceback.print_exc()
            failed.append(path.stem)
        print(f"-- {path.stem}: {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
