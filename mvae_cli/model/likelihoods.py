"""Log-likelihoods per modality kind (Bernoulli on logits for images in [0, 1],
categorical for labels). Each returns one value per row: the sum over the example's dimensions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for x in [0, 1] (continuous values allowed, as the paper does for MNIST).

    Args:
        logits: ``[R, *shape]``.
        x: ``[R, *shape]`` in [0, 1].

    Returns:
        ``[R]``.
    """
    ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return ll.flatten(1).sum(dim=1)


def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for class ids.

    Args:
        logits: ``[R, C]``.
        x: ``[R]`` integer class ids.

    Returns:
        ``[R]``.
    """
    return -F.cross_entropy(logits, x.long(), reduction="none")


LOG_PROB = {"bernoulli": bernoulli_log_prob, "categorical": categorical_log_prob}
