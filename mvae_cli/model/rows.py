"""Which rows of a batch show what, found on the host: no device sync inside a training step.

Every shape in a training step that follows the mask (the rows an encoder runs on, the (example,
subset) rows of an objective, the rows a decoder scores) is computed here in numpy from the batch's
mask on the host, and only index tensors of those known sizes go to the device. The engine hands
the host copy over with the batch (:func:`with_host_mask`); any other caller (validation, the
estimator, tests) gets it copied back from the device once per call.
"""

from __future__ import annotations

import numpy as np
import torch

HOST_MASK = "host_mask"  # the batch key of the host copy of ``batch["mask"]``


def with_host_mask(batch: dict[str, torch.Tensor], mask: np.ndarray) -> dict:
    """``batch`` with the host copy ``mask bool [B, M]`` of its ``batch["mask"]``."""
    return {**batch, HOST_MASK: np.ascontiguousarray(mask, dtype=bool)}


def host_mask(batch: dict | None, mask: torch.Tensor) -> np.ndarray:
    """The host copy of ``mask``: the batch's own when ``mask`` is ``batch["mask"]``, else copied back."""
    if isinstance(batch, dict) and batch.get("mask") is mask and HOST_MASK in batch:
        return batch[HOST_MASK]
    return mask.detach().cpu().numpy().astype(bool)


def index(rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Host row numbers ``[R]`` as a device ``long`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(device, non_blocking=True)


def where(column: np.ndarray, device: torch.device | str) -> torch.Tensor | None:
    """The rows where the host ``column bool [B]`` holds, as a device index; None when it holds everywhere."""
    if column.all():
        return None
    return index(np.flatnonzero(column), device)


def as_device(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A host array on the device (bool, int or float as it is)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def host(array: "np.ndarray | torch.Tensor") -> np.ndarray:
    """A host array as it is; a tensor copied to the host (library callers outside a training step)."""
    return array.detach().cpu().numpy() if torch.is_tensor(array) else array
