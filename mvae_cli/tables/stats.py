"""Summary statistics over seeds: mean, sample standard deviation and a Student-t 95% interval.

No scipy: the 0.975 quantiles of Student's t for 1..30 degrees of freedom are tabulated;
beyond 30 a Cornish–Fisher expansion around the normal quantile is used (error < 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

# t_{0.975}(df) for df = 1..30.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


@dataclass(frozen=True)
class Summary:
    """Statistics of one figure over the runs of a grid point (NaN where undefined)."""

    mean: float
    std: float  # sample standard deviation (n - 1); NaN for one value
    ci95: float  # half-width of the 95% confidence interval of the mean; NaN for one value
    count: int


def summarize(values: Iterable[float | None]) -> Summary:
    """Summarise the finite numbers among ``values`` (None, NaN and ±inf are left out)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, math.nan, math.nan, 1)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return Summary(mean, std, t_quantile_975(n - 1) * std / math.sqrt(n), n)
