"""Batches from a prepared dataset: ``{modality: tensor [B, ...], "mask": bool[B, M]}``.

Datasets that fit are moved to the device whole (images stay uint8 there) and batched by
index slices; larger ones are read from HDF5 batch by batch.

Dynamic binarisation (recipe ``data.binarize``) draws every image pixel as x ~ Bernoulli(x/255):
training batches anew at every step (:func:`dynamic_binarize`, from the stream of
(seed, step), so a resumed run draws what an uninterrupted one does), the valid and test
splits once, each row from its own CPU stream of (:data:`FIXED_BINARIZE_SEED`, row), so every
run of a study is validated and evaluated on the same binary images whatever the batch size,
device or storage.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Sequence

import numpy as np
import torch

from mvae_cli.data.format import DatasetFile
from mvae_cli.errors import UserError
from mvae_cli.streams import stream

FIXED_BINARIZE_SEED = 0
# Stream tags, apart from the estimator's (0: particles, 1: prior samples).
_TRAIN_TAG, _FIXED_TAG = 2, 3


_SHARED: contextvars.ContextVar = contextvars.ContextVar("shared_splits", default=None)


@contextlib.contextmanager
def shared_splits():
    """Within: the splits :class:`SplitData` reads whole are read once per file, split and version
    (size, modification time) and their arrays shared, not copied: the runs of a stack, or the
    evaluations of a sweep's process, read a dataset once and hold it once in memory."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _load(dataset: DatasetFile, split: str) -> dict[str, np.ndarray]:
    cache = _SHARED.get()
    if cache is None:
        return dataset.load(split)
    stat = os.stat(dataset.path)
    key = (os.path.realpath(dataset.path), split, stat.st_size, stat.st_mtime_ns)
    if key not in cache:
        cache[key] = dataset.load(split)
    return dict(cache[key])


def _to_model_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "image":
        return x.float().div_(255.0)
    if kind == "binary":
        return x.float()
    return x.long()


def binarized_modalities(binarize: bool, model) -> list[str]:
    """The modalities dynamic binarisation draws: every image modality when ``binarize``.

    Raises:
        UserError: one of them is not scored by the Bernoulli likelihood (binary pixels under
            a density on [0, 1] or on the real line have unbounded likelihoods).
    """
    if not binarize:
        return []
    names = [s.name for s in model.specs if s.kind == "image"]
    for name in names:
        likelihood = model.likelihoods[name]
        if likelihood.name != "bernoulli":
            raise UserError(f"recipe key 'data.binarize' draws binary pixels, so 'model.likelihoods.{name}' "
                            f"must be bernoulli, got {likelihood.describe()!r}")
    return names


def dynamic_binarize(batch: dict[str, torch.Tensor], names: Sequence[str], seed: int, step: int) -> dict[str, torch.Tensor]:
    """A training batch with the modalities ``names`` (pixels in [0, 1]) drawn as x ~ Bernoulli(x).

    The draws come from the stream of (``seed``, ``step``) on the batch's device, in modality
    order: the same on one device for the same seed and step.

    Returns:
        A new batch mapping; the other entries are shared with ``batch``.
    """
    out = dict(batch)
    if names:
        generator = stream(seed, _TRAIN_TAG, step, batch[names[0]].device)
        for name in names:
            out[name] = torch.bernoulli(batch[name], generator=generator)
    return out


def fixed_binarize(pixels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Stored uint8 pixels ``[B, ...]`` of split rows ``rows`` (``long[B]``) drawn once as
    255 · Bernoulli(x/255), row r from the CPU stream of (:data:`FIXED_BINARIZE_SEED`, r), so a
    row's pixels do not depend on its batch or on the device."""
    x = pixels.cpu().float().div_(255.0)
    out = torch.empty_like(x)
    for i, r in enumerate(rows.tolist()):
        out[i] = torch.bernoulli(x[i], generator=stream(FIXED_BINARIZE_SEED, _FIXED_TAG, int(r)))
    return out.mul_(255).to(torch.uint8).to(pixels.device)


class SplitData:
    """One split of a dataset, ready for batching.

    Args:
        dataset: the open file.
        split: ``train``, ``valid`` or ``test``.
        device: where batches are produced.
        mask: ``bool[N, M]`` for the rows; default all observed.
        budget_bytes: keep the split on the device when its arrays take at most this.
        binarize: image modalities binarised once (:func:`fixed_binarize`): for valid and test.
    """

    def __init__(self, dataset: DatasetFile, split: str, device: torch.device,
                 mask: np.ndarray | None = None, budget_bytes: int | None = None, binarize: Sequence[str] = ()):
        self.specs = dataset.specs
        self.binarize = list(binarize)
        self.device = device
        n = dataset.sizes[split]
        self.n = n
        mask = np.ones((n, len(self.specs)), dtype=bool) if mask is None else mask
        self.mask = torch.from_numpy(np.ascontiguousarray(mask)).to(device)
        size = sum(dataset.array(split, s.name).nbytes for s in self.specs)
        self.on_device = budget_bytes is None or size <= budget_bytes
        if self.on_device:
            arrays = _load(dataset, split)  # shared within shared_splits(): never written to
            tensors = {s.name: torch.from_numpy(arrays[s.name]) for s in self.specs}
            for name in self.binarize:
                tensors[name] = fixed_binarize(tensors[name], torch.arange(n))
            self._tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
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
            out = {}
            for s in self.specs:
                raw = torch.from_numpy(self._arrays[s.name][rows])
                if s.name in self.binarize:
                    raw = fixed_binarize(raw, index.cpu())
                out[s.name] = _to_model_input(s.kind, raw.to(self.device))
            index = index.to(self.device)
        out["mask"] = self.mask[index]
        return out

    def batches(self, batch_size: int, limit: int | None = None):
        """In-order batches over the first ``limit`` rows (all by default), for evaluation."""
        n = self.n if limit is None else min(limit, self.n)
        for start in range(0, n, batch_size):
            yield start, self.batch(torch.arange(start, min(start + batch_size, n)))
