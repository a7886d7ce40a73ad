"""Exact percentiles, medians and per-second buckets: the arithmetic of the report.

No interpolation: a percentile is the nearest-rank value of the sorted samples (the value
below which at least p% of the samples fall), so every reported latency was observed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``0 < p <= 100``) of the samples; NaN when there are none."""
    if not samples:
        return math.nan
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Count, P50/P90/P95/P99/P99.9, max and mean of latency samples (same unit as given)."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "p999": percentile(ordered, 99.9),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def median(values: Iterable[float]) -> float:
    """The median of repeated runs; NaN for none."""
    values = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(values) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def per_second(timestamps: Iterable[float], start: float, duration: float) -> list[int]:
    """How many of the (completion) timestamps fall into each whole second after ``start``."""
    buckets = [0] * max(1, math.ceil(duration))
    for stamp in timestamps:
        index = int(stamp - start)
        if 0 <= index < len(buckets):
            buckets[index] += 1
    return buckets
