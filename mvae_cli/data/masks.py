"""Weak-supervision masks: the mask is the data, never a copy of it.

A mask is ``bool[N, M]``: entry ``[n, m]`` says whether training example ``n``
shows modality ``m`` (columns in the dataset's modality order). The same two
functions build masks in ``mvae prepare`` and, when a file lacks one, in
``mvae train``.
"""

from __future__ import annotations

import math

import numpy as np


def _check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def supervision_mask(n: int, n_modalities: int, fraction: float, seed: int) -> np.ndarray:
    """Paired fraction ``f``, the rest unimodal-only (the MVAE paper, §6.1).

    A permutation of the ``n`` examples is drawn from ``seed``; its first
    ``round(f * n)`` examples are paired (every modality shown); the remainder is
    dealt out in turn to one unimodal-only group per modality, so the groups
    differ in size by at most one. Because the permutation depends on the seed
    alone, the paired sets of one seed are nested across levels.

    Args:
        n: number of training examples.
        n_modalities: M, the number of modalities.
        fraction: f in [0, 1].
        seed: the permutation's seed.

    Returns:
        ``bool[n, M]``.
    """
    _check_fraction("supervision", fraction, low_open=False)
    order = np.random.default_rng(seed).permutation(n)
    n_paired = int(math.floor(fraction * n + 0.5))  # round half up, not to even
    mask = np.zeros((n, n_modalities), dtype=bool)
    mask[order[:n_paired]] = True
    rest = order[n_paired:]
    mask[rest, np.arange(rest.size) % n_modalities] = True
    return mask


def keep_prob_mask(n: int, n_modalities: int, p: float, seed: int) -> np.ndarray:
    """Each modality of each example kept independently with probability ``p`` (paper §6.1, Fig. 5).

    Rows left with no modality are all-False; training skips them.

    Returns:
        ``bool[n, M]``.
    """
    _check_fraction("keep-prob", p, low_open=True)
    return np.random.default_rng(seed).random((n, n_modalities)) < p


def mask_name(kind: str, value: float, seed: int) -> str:
    """The HDF5 name of a mask, e.g. ``supervision=0.01,seed=0``."""
    if kind not in ("supervision", "keep_prob"):
        raise ValueError(f"unknown mask kind {kind!r}")
    return f"{kind}={value:g},seed={seed}"


def build_mask(kind: str, value: float, n: int, n_modalities: int, seed: int) -> np.ndarray:
    """Dispatch to :func:`supervision_mask` or :func:`keep_prob_mask` by ``kind``."""
    if kind == "supervision":
        return supervision_mask(n, n_modalities, value, seed)
    if kind == "keep_prob":
        return keep_prob_mask(n, n_modalities, value, seed)
    raise ValueError(f"unknown mask kind {kind!r}")
