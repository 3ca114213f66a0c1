"""Batches from a prepared dataset: ``{modality: tensor [B, ...], "mask": bool[B, M]}``.

Datasets that fit are moved to the device whole (images stay uint8 there) and batched by
index slices; larger ones are read from HDF5 batch by batch.
"""

from __future__ import annotations

import numpy as np
import torch

from mvae_cli.data.format import DatasetFile


def _to_model_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "image":
        return x.float().div_(255.0)
    if kind == "binary":
        return x.float()
    return x.long()


class SplitData:
    """One split of a dataset, ready for batching.

    Args:
        dataset: the open file.
        split: ``train``, ``valid`` or ``test``.
        device: where batches are produced.
        mask: ``bool[N, M]`` for the rows; default all observed.
        budget_bytes: keep the split on the device when its arrays take at most this.
    """

    def __init__(self, dataset: DatasetFile, split: str, device: torch.device,
                 mask: np.ndarray | None = None, budget_bytes: int | None = None):
        self.specs = dataset.specs
        self.device = device
        n = dataset.sizes[split]
        self.n = n
        mask = np.ones((n, len(self.specs)), dtype=bool) if mask is None else mask
        self.mask = torch.from_numpy(np.ascontiguousarray(mask)).to(device)
        size = sum(dataset.array(split, s.name).nbytes for s in self.specs)
        self.on_device = budget_bytes is None or size <= budget_bytes
        if self.on_device:
            arrays = dataset.load(split)
            self._tensors = {s.name: torch.from_numpy(arrays[s.name]).to(device) for s in self.specs}
        else:
            self._arrays = {s.name: dataset.array(split, s.name) for s in self.specs}

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows ``index`` (``long[B]``, on any device) as model inputs plus ``mask``."""
        if self.on_device:
            index = index.to(self.device)
            out = {s.name: _to_model_input(s.kind, self._tensors[s.name][index]) for s in self.specs}
        else:
            # h5py reads increasing indices only; a batch's order does not matter to the loss.
            index = index.sort().values
            rows = index.cpu().numpy()
            out = {s.name: _to_model_input(s.kind, torch.from_numpy(self._arrays[s.name][rows]).to(self.device))
                   for s in self.specs}
            index = index.to(self.device)
        out["mask"] = self.mask[index]
        return out

    def batches(self, batch_size: int, limit: int | None = None):
        """In-order batches over the first ``limit`` rows (all by default), for evaluation."""
        n = self.n if limit is None else min(limit, self.n)
        for start in range(0, n, batch_size):
            yield start, self.batch(torch.arange(start, min(start + batch_size, n)))
