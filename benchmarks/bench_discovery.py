"""Benchmark: cost of plugin discovery beyond importing torch (target: under 50 ms).

Runs fresh interpreters side by side: one that imports torch only, one that imports torch and then discovers
and registers every installed plugin. Prints the median of each and their difference.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

BASE = "import time, torch; t = time.perf_counter(); {body}; print(time.perf_counter() - t)"
RUNS = 7


def _time(body: str) -> float:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", BASE.format(body=body)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the median discovery time over fresh processes, after torch is imported."""
    empty, discovery = [], []
    for _ in range(RUNS):
        empty.append(_time("pass"))
        discovery.append(_time("import xai_plugins; n = len(xai_plugins.list_components())"))
    count = subprocess.run([sys.executable, "-W", "ignore", "-c",
                            "import xai_plugins; print(len(xai_plugins.list_components()), "
                            "len(xai_plugins.plugins()))"], capture_output=True, text=True, check=True)
    comps, plugins = count.stdout.split()
    cost = statistics.median(discovery) - statistics.median(empty)
    print(f"plugins: {plugins}, components: {comps}")
    print(f"discovery beyond importing torch: median {cost * 1000:.1f} ms over {RUNS} fresh processes "
          f"(target < 50 ms): {'OK' if cost < 0.05 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
