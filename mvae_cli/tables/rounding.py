"""Numbers as a table shows them: rounded to their standard error, an exact figure without ±.

A mean is printed to the decimal place its error reaches: the error keeps one significant digit,
two when that digit is 1 or 2 (0.012, 0.05, 4.6 → 5), and the mean the same number of
decimals, so ``0.41237 ± 0.01563`` reads ``0.412 ± 0.016`` and ``-957.19 ± 6.49`` reads
``-957 ± 6``. A figure that is the same for every run (chance, on the same test examples) is
exact: it is printed without ±, to three significant digits.
"""

from __future__ import annotations

import math

EXACT_DIGITS = 3  # significant digits of a figure without an error
FALLBACK_DIGITS = 4  # ... and of one whose error is unknown


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def error_decimals(error: float) -> int | None:
    """The decimal place an error of this size reaches (negative: tens, hundreds); None for no error.

    >>> error_decimals(0.012), error_decimals(0.05), error_decimals(4.56), error_decimals(34.0)
    (3, 2, 0, -1)
    """
    if not _finite(error) or error <= 0:
        return None
    decimals = -math.floor(math.log10(error))
    if round(error * 10.0**decimals, 6) < 3:  # a leading 1 or 2 keeps a second digit
        decimals += 1
    return decimals


def _fixed(value: float, decimals: int) -> str:
    if decimals >= 0:
        return f"{value:.{decimals}f}"
    step = 10.0 ** -decimals
    return f"{round(value / step) * step:.0f}"


def plain(value: float | None, digits: int = FALLBACK_DIGITS) -> str:
    """A number without an error: ``digits`` significant digits, thousands not in exponent form."""
    if not _finite(value):
        return "–"
    if value != 0 and abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def exact(value: float | None) -> str:
    """A figure without uncertainty (chance on a fixed test set): no ±, :data:`EXACT_DIGITS` digits."""
    if not _finite(value):
        return "–"
    if 0 <= value <= 1:
        return f"{value:.{EXACT_DIGITS}f}"
    return plain(value, EXACT_DIGITS)


def rounded(value: float | None, error: float | None) -> str:
    """``value`` alone, to the decimal place ``error`` reaches (:func:`error_decimals`)."""
    if not _finite(value):
        return "–"
    decimals = error_decimals(error)
    return plain(value) if decimals is None else _fixed(value, decimals)


def estimate(value: float | None, error: float | None) -> str:
    """``value ± error``, both to the decimal place the error reaches; the value alone when the
    error is unknown (NaN, None) and :func:`exact` when it is 0."""
    if not _finite(value):
        return "–"
    if _finite(error) and error == 0:
        return exact(value)
    decimals = error_decimals(error)
    if decimals is None:
        return plain(value)
    return f"{_fixed(value, decimals)} ± {_fixed(error, decimals)}"


def interval(value: float | None, error: float | None, half_width: float | None) -> str:
    """``value ± half_width`` (a confidence interval), both to the decimal place the standard error
    ``error`` reaches; as :func:`estimate` when the interval is unknown."""
    decimals = error_decimals(error)
    if not _finite(value) or decimals is None or not _finite(half_width):
        return estimate(value, error)
    return f"{_fixed(value, decimals)} ± {_fixed(half_width, decimals)}"


def binomial_se(share: float, n: int) -> float:
    """The standard error of a share of ``n`` independent trials (an accuracy on ``n`` test examples);
    at a share of 0 or 1 the error of one trial in ``n`` (the share's resolution), not 0."""
    if n < 1 or not _finite(share):
        return math.nan
    return math.sqrt(max(share * (1.0 - share), 1.0 / n) / n)


def is_exact(std: float, mean: float) -> bool:
    """Whether a figure's spread over runs is only rounding (chance on the same test examples)."""
    return _finite(std) and _finite(mean) and std <= 1e-9 * max(1.0, abs(mean))
