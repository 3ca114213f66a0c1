"""When an importance-sampled figure cannot be trusted: too few effective particles, or log weights
spread so widely that a few rare particles decide the estimate.

A proposal far from the posterior (q(z | attributes) scoring a 3,072-pixel image) gives log
weights whose variance runs into the thousands; the log-mean-exp of K such weights is then set
by the largest one, the effective sample size (Σw)²/Σw² falls to one or two particles, and the
estimate sits far below log p(x) however small its standard error looks. ``mvae eval`` marks such
a figure in its table and the figures draw it hollow (docs/figures.md). The thresholds are rules
of thumb, not tests: the figure is still computed and kept.
"""

from __future__ import annotations

import math

ESS_FLOOR = 2.0  # fewer effective particles than this: one particle carries the estimate
VAR_CEILING = 1000.0  # nats²: log weights spread by ±30 nats, so e^30 between typical particles


def unreliable(ess: float | None, var_log_w: float | None) -> bool:
    """Whether an estimate with this mean effective sample size and log-weight variance is unreliable
    (unknown numbers, NaN or None, say nothing)."""
    low = ess is not None and math.isfinite(ess) and ess < ESS_FLOOR
    wide = var_log_w is not None and math.isfinite(var_log_w) and var_log_w > VAR_CEILING
    return low or wide


def rule() -> str:
    """The thresholds in words, for legends and table notes."""
    return f"ESS < {ESS_FLOOR:g} or Var[log w] > {VAR_CEILING:,.0f} nats²"
