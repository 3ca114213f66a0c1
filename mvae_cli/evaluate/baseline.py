"""The lines a weak-supervision study must beat: chance, and a classifier trained on the paired rows only.

A multimodal model trained at supervision level f sees f·N paired examples and many unpaired
ones; it helps only if it predicts y from x better than a plain supervised classifier given
the same f·N pairs. For each predicted modality y with classes (categorical, binary):

- ``chance``: the accuracy of always predicting the most frequent class of the scored test
  examples (per attribute for binary modalities, then their mean): the best any constant
  predictor can do there.
- ``baseline``: the model's x encoder architecture (:func:`~mvae_cli.model.nets.build_encoder`,
  same latent size, width and image network) with a linear head, trained with Adam on the rows
  of the run's mask that show both x and y — nothing else — and early-stopped on the valid
  split (validated every max(1 epoch, 1,000 examples), patience 5, at most 100 rounds and
  20,000 steps); its accuracy on the same test examples as the model's.

Training the baseline is the same work for every run of a study with the same mask (the models of
one supervision level and seed): its figures are kept beside the dataset file
(``<dataset>.baselines.json``, :func:`cached_baselines`), keyed by everything they depend on, and
computed once.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from mvae_cli.atomic import exclusive_lock, write_json
from mvae_cli.model.nets import build_encoder

KINDS = ("categorical", "binary")
ROUND_EXAMPLES = 1000  # examples between validations (at least one epoch of the paired rows)
PATIENCE = 5  # validations without improvement before stopping
MAX_ROUNDS = 100
MAX_STEPS = 20_000  # bounds the cost on large paired sets (≈ 40 epochs of MNIST's 50,000)
VALID_LIMIT = 2000  # valid rows scored for early stopping
BATCH_SIZE = 100
LR = 1e-3

Batches = Callable[[torch.Tensor], dict]  # rows long[B] -> {name: model input [B, ...]}
BASELINE_VERSION = 1  # bump when the classifier, its training or its figures change: old entries are not read


class PairedClassifier(nn.Module):
    """x → the model's x encoder → (mu, logvar) concatenated → linear → class logits (or attribute logits)."""

    def __init__(self, x_spec, y_spec, latent_dim: int, hidden: int, image_net: str):
        super().__init__()
        self.encoder = build_encoder(x_spec, latent_dim, hidden, image_net)
        self.kind = y_spec.kind
        outputs = y_spec.classes if y_spec.kind == "categorical" else math.prod(y_spec.shape)
        self.head = nn.Linear(2 * latent_dim, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat(self.encoder(x), dim=-1))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "categorical":
            return nn.functional.cross_entropy(logits, y.long())
        return nn.functional.binary_cross_entropy_with_logits(logits, y.reshape(logits.shape).float())

    def right(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Correct predictions: ``[B]`` for categorical, ``[B, D]`` for binary."""
        if self.kind == "categorical":
            return logits.argmax(dim=-1) == y.long()
        return (logits > 0) == (y.reshape(logits.shape) > 0.5)


def chance_accuracy(spec, labels: torch.Tensor) -> float:
    """The accuracy of always predicting the most frequent class of ``labels``.

    Args:
        spec: a categorical or binary modality.
        labels: ``[N]`` class ids, or ``[N, *shape]`` 0/1 attributes.
    """
    if spec.kind == "categorical":
        counts = torch.bincount(labels.long().reshape(-1), minlength=spec.classes)
        return float(counts.max()) / max(1, labels.shape[0])
    present = (labels.reshape(labels.shape[0], -1) > 0.5).double().mean(dim=0)
    return float(torch.maximum(present, 1 - present).mean())


def paired_rows(mask: np.ndarray, x_column: int, y_column: int) -> np.ndarray:
    """Indices of the training rows that show both x and y (the paired rows of a supervision mask)."""
    return np.flatnonzero(mask[:, x_column] & mask[:, y_column])


def _accuracy(model: PairedClassifier, batches: Batches, n: int, x: str, y: str, device) -> float:
    model.eval()
    right, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, n, 500):
            batch = batches(torch.arange(start, min(start + 500, n), device=device))
            hits = model.right(model(batch[x]), batch[y]).double()
            right += float(hits.mean(dim=1).sum()) if hits.dim() > 1 else float(hits.sum())
            count += hits.shape[0]
    model.train()
    return right / max(1, count)


def train_paired_classifier(x_spec, y_spec, train: Batches, rows: np.ndarray, valid: Batches, n_valid: int, *,
                            latent_dim: int, hidden: int, image_net: str, seed: int, device) -> PairedClassifier:
    """Train the baseline on ``rows`` of the training split only, keeping the best valid accuracy.

    Args:
        x_spec, y_spec: the input and predicted modalities.
        train: ``train(rows long[B]) -> batch`` of the training split.
        rows: the training rows to learn from (:func:`paired_rows`); no other row is read.
        valid: the same for the valid split, scored on its first ``n_valid`` rows.
        latent_dim, hidden, image_net: the model's settings (the encoder is built as the model's).
        seed: seeds initialisation and shuffling (the global RNG is left as it was).

    Returns:
        The classifier at its best validation round, in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PairedClassifier(x_spec, y_spec, latent_dim, hidden, image_net).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    shuffle = torch.Generator().manual_seed(seed)
    rows = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    x, y = x_spec.name, y_spec.name
    best, best_state, waited = -1.0, None, 0
    steps_per_round = max(math.ceil(rows.numel() / BATCH_SIZE), ROUND_EXAMPLES // BATCH_SIZE)
    order, used = rows[torch.randperm(rows.numel(), generator=shuffle)], 0
    model.train()
    for _ in range(min(MAX_ROUNDS, max(1, MAX_STEPS // steps_per_round))):
        for _ in range(steps_per_round):
            if used >= order.numel():
                order, used = rows[torch.randperm(rows.numel(), generator=shuffle)], 0
            index = order[used:used + BATCH_SIZE]
            used += index.numel()
            batch = train(index)
            loss = model.loss(model(batch[x]), batch[y])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = _accuracy(model, valid, n_valid, x, y, device)
        if score > best:
            best, waited = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model


def paired_baselines(specs: Sequence, x: str, y: Sequence[str], mask: np.ndarray, train: Batches, valid: Batches,
                     n_valid: int, test: Batches, n_test: int, *, latent_dim: int, hidden: int, image_net: str,
                     seed: int, device) -> dict[str, dict[str, float | int]]:
    """Chance and the paired-only classifier for every predicted modality with classes.

    Args:
        specs: the dataset's modalities (mask columns follow them).
        x: the modality predicted from; y: the predicted ones (others than categorical and
            binary are skipped).
        mask: ``bool[N_train, M]``, the run's training mask.
        train, valid, test: ``split(rows) -> batch`` for each split.
        n_valid, n_test: rows scored (the first ones) of valid and test.

    Returns:
        ``{"chance": {y: acc, "mean"}, "baseline": {y: acc, "mean"}, "baseline_rows": {y: rows}}``;
        a y with no paired row has no baseline; empty mappings without a y with classes.
    """
    names = [s.name for s in specs]
    by_name = {s.name: s for s in specs}
    chance, baseline, used = {}, {}, {}
    for name in y:
        spec = by_name[name]
        if spec.kind not in KINDS:
            continue
        labels = torch.cat([test(torch.arange(s, min(s + 5000, n_test), device=device))[name].cpu()
                            for s in range(0, n_test, 5000)])
        chance[name] = chance_accuracy(spec, labels)
        rows = paired_rows(mask, names.index(x), names.index(name))
        used[name] = int(rows.size)
        if rows.size == 0:
            continue
        model = train_paired_classifier(by_name[x], spec, train, rows, valid, n_valid, latent_dim=latent_dim,
                                        hidden=hidden, image_net=image_net, seed=seed, device=device)
        baseline[name] = _accuracy(model, test, n_test, x, name, device)
    for table in (chance, baseline):
        if table:
            table["mean"] = sum(table.values()) / len(table)
    return {"chance": chance, "baseline": baseline, "baseline_rows": used}


def baselines_path(dataset_path: str | Path) -> Path:
    dataset_path = Path(dataset_path)
    return dataset_path.with_name(dataset_path.name + ".baselines.json")


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def cached_baselines(dataset_path: str | Path, mask: np.ndarray, settings: dict[str, Any],
                     compute: Callable[[], dict]) -> dict:
    """The figures of :func:`paired_baselines` for this dataset file, mask and settings: read from
    ``<dataset>.baselines.json`` when computed before, else ``compute()`` and kept there.

    The key is the file (size and modification time, as the coherence classifiers' cache), the whole
    mask, every setting the classifier and its scoring depend on (``settings``: modalities, model
    sizes, seed, rows scored, split, binarisation) and :data:`BASELINE_VERSION`. Evaluations side by
    side wait for each other (:func:`~mvae_cli.atomic.exclusive_lock`), so one computes. A damaged cache is
    ignored, and one that cannot be written (a read-only folder) only costs the time.
    """
    path, stat = baselines_path(dataset_path), Path(dataset_path).stat()
    mask = np.ascontiguousarray(mask, dtype=bool)
    key = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "version": BASELINE_VERSION,
                      "mask": [list(mask.shape), hashlib.sha256(mask.tobytes()).hexdigest()], **settings},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    found = _read_cache(path).get(digest)
    if isinstance(found, dict):
        return found
    with exclusive_lock(path):  # an evaluation beside this one (a sweep's --jobs) may be computing it
        found = _read_cache(path).get(digest)
        if isinstance(found, dict):
            return found
        result = compute()
        cache = _read_cache(path)  # read again: an evaluation without the lock may have added an entry
        cache[digest] = result
        try:
            write_json(path, cache)
        except OSError:
            pass
    return result
