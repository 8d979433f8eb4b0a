"""Min/max downsampling of a curve for plotting: at most ``max_points`` points that keep its shape.

The series is cut into equal buckets of consecutive points; each bucket keeps its lowest and its
highest value (in their original order), so spikes and dips survive that plain striding would
drop. The first and last points are always kept, hence the overall min and max too. When the
series has gaps (None), each bucket with a gap also keeps its first gap, so a plotted line
still breaks where the values were not finite.
"""
from __future__ import annotations

from typing import Sequence


def minmax_indices(y: Sequence[float | None], max_points: int) -> list[int]:
    """Sorted indices of the points to keep; at most ``max_points`` (at least 2 are kept when
    the series has 2 or more points)."""
    n = len(y)
    if n <= max(max_points, 2):
        return list(range(n))
    has_gap = any(v is None for v in y)
    per_bucket = 3 if has_gap else 2
    buckets = max(0, (max_points - 2) // per_bucket)
    keep = {0, n - 1}
    if buckets:
        inner = n - 2  # points 1 .. n-2 go into buckets
        for b in range(buckets):
            lo = 1 + b * inner // buckets
            hi = 1 + (b + 1) * inner // buckets
            best_lo = best_hi = gap = None
            for i in range(lo, hi):
                v = y[i]
                if v is None:
                    if gap is None:
                        gap = i
                    continue
                if best_lo is None or v < y[best_lo]:
                    best_lo = i
                if best_hi is None or v > y[best_hi]:
                    best_hi = i
            keep.update(i for i in (best_lo, best_hi, gap) if i is not None)
    return sorted(keep)


def minmax(x: Sequence[float], y: Sequence[float | None],
           max_points: int) -> tuple[list[float], list[float | None]]:
    """(x, y) downsampled with ``minmax_indices``."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)}).")
    idx = minmax_indices(y, max_points)
    return [x[i] for i in idx], [y[i] for i in idx]
