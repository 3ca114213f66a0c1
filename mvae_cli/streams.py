"""Named random streams: a generator per ``(seed, tag, index[, block])``, so that a draw depends on
what it is for (an example's particles, a batch's binarisation), never on what ran before it.

Used by the engine (dynamic binarisation) and the estimator (particle noise)."""

from __future__ import annotations

import numpy as np
import torch


def stream(seed: int, tag: int, index: int, device: torch.device | str = "cpu", block: int = 0) -> torch.Generator:
    """A generator on ``device`` for the ``(seed, tag, index[, block])`` stream (mixed by numpy's SeedSequence)."""
    key = [int(seed), int(tag), int(index)] + ([int(block)] if block else [])
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))
