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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mvae_cli.atomic import exclusive_lock, write_json
from mvae_cli.evaluate.paired_train import (Batches, PairedClassifier, Progress, accuracy, most_rounds,
                                            train_classifier_groups)

__all__ = ["KINDS", "VALID_LIMIT", "BASELINE_VERSION", "PairedClassifier", "chance_accuracy", "paired_rows",
           "paired_baselines", "paired_baselines_of_runs", "baselines_path", "cached_baselines", "cached_baseline",
           "keep_baselines"]

KINDS = ("categorical", "binary")
VALID_LIMIT = 2000  # valid rows scored for early stopping
# bump when the classifier, its training or its figures change: old entries are not read
# (2: the classifiers of the same paired rows trained as one stack, equal up to the last bits)
BASELINE_VERSION = 2


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


def paired_baselines(specs: Sequence, x: str, y: Sequence[str], mask: np.ndarray, train: Batches, valid: Batches,
                     n_valid: int, test: Batches, n_test: int, *, latent_dim: int, hidden: int, image_net: str,
                     seed: int, device, progress: Progress | None = None) -> dict[str, dict[str, float | int]]:
    """Chance and the paired-only classifier for every predicted modality with classes.

    Args:
        specs: the dataset's modalities (mask columns follow them).
        x: the modality predicted from; y: the predicted ones (others than categorical and
            binary are skipped).
        mask: ``bool[N_train, M]``, the run's training mask.
        train, valid, test: ``split(rows) -> batch`` for each split.
        n_valid, n_test: rows scored (the first ones) of valid and test.
        progress: ``progress(done, total)`` in validation rounds (``total``: the most the classifiers
            can take; the classifiers that learn from the same paired rows train together,
            :func:`~mvae_cli.evaluate.paired_train.train_paired_classifiers`).

    Returns:
        ``{"chance": {y: acc, "mean"}, "baseline": {y: acc, "mean"}, "baseline_rows": {y: rows}}``;
        a y with no paired row has no baseline; empty mappings without a y with classes.
    """
    return paired_baselines_of_runs(specs, x, y, [mask], [seed], train, valid, n_valid, test, n_test,
                                    latent_dim=latent_dim, hidden=hidden, image_net=image_net, device=device,
                                    progress=progress)[0]


def paired_baselines_of_runs(specs: Sequence, x: str, y: Sequence[str], masks: Sequence[np.ndarray],
                             seeds: Sequence[int], train: Batches, valid: Batches, n_valid: int, test: Batches,
                             n_test: int, *, latent_dim: int, hidden: int, image_net: str, device,
                             progress: Progress | None = None) -> list[dict[str, dict[str, float | int]]]:
    """:func:`paired_baselines` of several runs of one dataset (their masks and seeds) at once: the
    classifiers of every run's paired rows are trained together with those of the other runs' paired
    rows of the same size (the seeds of one supervision level) as one stack
    (:func:`~mvae_cli.evaluate.paired_train.train_classifier_groups`), each ending as it would alone
    up to the last bits of its weights.

    Returns:
        Per run, its :func:`paired_baselines` mapping.
    """
    names = [s.name for s in specs]
    by_name = {s.name: s for s in specs}
    labels = {}
    results = [{"chance": {}, "baseline": {}, "baseline_rows": {}} for _ in masks]
    # each run's sets of paired rows with their predicted modalities; then the sets of one size together
    groups: dict[int, list[tuple[int, np.ndarray, list[str]]]] = {}
    for r, mask in enumerate(masks):
        mine: dict[bytes, tuple[np.ndarray, list[str]]] = {}
        for name in y:
            spec = by_name[name]
            if spec.kind not in KINDS:
                continue
            if name not in labels:
                labels[name] = torch.cat([test(torch.arange(s, min(s + 5000, n_test), device=device))[name].cpu()
                                          for s in range(0, n_test, 5000)])
            results[r]["chance"][name] = chance_accuracy(spec, labels[name])
            rows = paired_rows(mask, names.index(x), names.index(name))
            results[r]["baseline_rows"][name] = int(rows.size)
            if rows.size:
                mine.setdefault(rows.tobytes(), (rows, []))[1].append(name)
        for rows, group in mine.values():
            groups.setdefault(int(rows.size), []).append((r, rows, group))
    most = [most_rounds(size) for size in groups]  # each stack's rounds at most
    for i, members in enumerate(groups.values()):
        report = None if progress is None else \
            (lambda done, _, before=sum(most[:i]): progress(before + done, sum(most)))
        trained = train_classifier_groups(by_name[x], [([by_name[n] for n in group], rows, seeds[r])
                                                       for r, rows, group in members],
                                          train, valid, n_valid, latent_dim=latent_dim, hidden=hidden,
                                          image_net=image_net, device=device, progress=report)
        for (r, _, group), models in zip(members, trained):
            for name, model in zip(group, models):
                results[r]["baseline"][name] = accuracy(model, test, n_test, x, name, device)
    for result in results:
        result["baseline"] = {name: result["baseline"][name] for name in y if name in result["baseline"]}  # y's order
        for table in (result["chance"], result["baseline"]):
            if table:
                table["mean"] = sum(table.values()) / len(table)
    return results


def baselines_path(dataset_path: str | Path) -> Path:
    dataset_path = Path(dataset_path)
    return dataset_path.with_name(dataset_path.name + ".baselines.json")


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _cache_key(dataset_path: str | Path, mask: np.ndarray, settings: dict[str, Any]) -> str:
    stat = Path(dataset_path).stat()
    mask = np.ascontiguousarray(mask, dtype=bool)
    key = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "version": BASELINE_VERSION,
                      "mask": [list(mask.shape), hashlib.sha256(mask.tobytes()).hexdigest()], **settings},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


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
    found = cached_baseline(dataset_path, mask, settings)
    if found is not None:
        return found
    path = baselines_path(dataset_path)
    with exclusive_lock(path):  # an evaluation beside this one (a sweep's --jobs) may be computing it
        found = cached_baseline(dataset_path, mask, settings)
        if found is not None:
            return found
        result = compute()
        keep_baselines(dataset_path, [(mask, settings, result)])
    return result


def cached_baseline(dataset_path: str | Path, mask: np.ndarray, settings: dict[str, Any]) -> dict | None:
    """The figures kept for this dataset file, mask and settings (:func:`cached_baselines`), or None."""
    found = _read_cache(baselines_path(dataset_path)).get(_cache_key(dataset_path, mask, settings))
    return found if isinstance(found, dict) else None


def keep_baselines(dataset_path: str | Path, entries: Sequence[tuple[np.ndarray, dict[str, Any], dict]]) -> None:
    """Add ``(mask, settings, figures)`` entries to the dataset file's cache (:func:`cached_baselines`);
    a cache that cannot be written only costs the time. The caller holds the cache's lock."""
    path = baselines_path(dataset_path)
    cache = _read_cache(path)  # read again: an evaluation without the lock may have added an entry
    for mask, settings, result in entries:
        cache[_cache_key(dataset_path, mask, settings)] = result
    try:
        write_json(path, cache)
    except OSError:
        pass
