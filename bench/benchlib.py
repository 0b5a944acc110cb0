"""What every script in bench/ uses: nearest-rank percentiles, the load average, and the
rewrite of a script's own section of docs/benchmarks.md."""

import math
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_NEW_DOCS = ("# Benchmarks\n\nFigures from the scripts in `bench/`; each script rewrites its "
             "own section.\n")


def percentile(values, p):
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def summary(values):
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=math.nan), "min": min(values, default=math.nan)}


def load_average():
    """The 1-minute load average: this machine is shared, and a busy one slows everything."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return math.nan


def write_section(text, begin, end, path=DOCS):
    """Put `text` (a section from its `begin` marker to its `end` marker, and the line end
    after it) in place of that section of `path`, or after the rest; the rest is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current = path.read_text() if path.exists() else _NEW_DOCS
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _m: text, current, count=1)
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current)
