"""Min-max downsampling that keeps extremes: each bucket's min and max, plus the first and last point.

Why not LTTB or MinMaxLTTB (tsdownsample): they pick one point per bucket by triangle area and
can drop the global minimum or maximum — exactly the spike (a CGGM coefficient blowing up) a user
must see. Min-max per bucket keeps every extreme by construction.
"""

from __future__ import annotations

import numpy as np


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most `max_points` points of `values` (ordered by step) to keep.

    NaN values are ignored when looking for a bucket's extremes, unless the whole bucket is NaN
    (then one NaN point stands for it, so that a run of NaN stays visible).
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    if max_points < 4:
        raise ValueError("max_points must be at least 4 (first, last, one min and one max)")
    interior = n - 2
    n_buckets = (max_points - 2) // 2
    bucket_len = -(-interior // n_buckets)  # ceil
    padded = np.full(n_buckets * bucket_len, np.nan)
    padded[:interior] = values[1:-1]
    grid = padded.reshape(n_buckets, bucket_len)  # (buckets, bucket_len)
    nan = np.isnan(grid)
    lo = np.argmin(np.where(nan, np.inf, grid), axis=1)
    hi = np.argmax(np.where(nan, -np.inf, grid), axis=1)
    base = np.arange(n_buckets) * bucket_len
    picked = np.concatenate([base + lo, base + hi]) + 1  # back to indices into `values`
    picked = picked[picked < n - 1]  # the last bucket may be short or empty (padding)
    return np.unique(np.concatenate([[0, n - 1], picked]))
