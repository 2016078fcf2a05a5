"""The row order of ``datasets.Dataset.shuffle(seed=...)``, without building an Arrow dataset.

``Dataset.shuffle(seed)`` selects rows by ``np.random.default_rng(seed).permutation(len)``
(datasets 2.x through 5.x; an empty dataset is returned as is). Reproducing the permutation
lets the pipeline keep plain row lists and still visit rows in the reference's order, and lets
a port in another language match it by reimplementing NumPy's PCG64 permutation.
"""

from __future__ import annotations

import numpy as np


def hf_shuffle_indices(n: int, seed: int) -> list[int]:
    """Source index of each row after ``Dataset.shuffle(seed=seed)`` on ``n`` rows."""
    if n < 0:
        raise ValueError(f"row count must be >= 0, got {n}")
    return np.random.default_rng(seed).permutation(n).tolist()
