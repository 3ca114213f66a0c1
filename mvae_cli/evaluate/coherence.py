"""Coherence (MMVAE and MoPoE papers): do generated modalities show the class they should?

The class is a dataset's first categorical modality (``label``). Each image (or binary)
modality gets a classifier — a small network per modality kind, trained on the training split
(:func:`train_classifiers`), its test accuracy the ceiling of its coherence — cached beside
the dataset file (``<dataset>.classifiers.pt``, :func:`load_or_train_classifiers`). The class
modality's own prediction is its decoder's arg max.

- Cross-modal coherence: for every target modality m and every non-empty subset S of the
  others that the model can condition on, z ~ q(z | S) (one draw, seeded), x̂_m decoded at z
  (an image as its mean, σ(l)), classified; the share of examples whose class is right,
  averaged per subset size |S| (and per target).
- Joint coherence: z ~ p(z); every modality decoded and classified; the share of draws on
  which all agree.

The library never prints; :func:`coherence` returns numbers only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from torch import nn

from mvae_cli.atomic import atomic_path, exclusive_lock

CLASSIFIER_KINDS = ("image", "binary")
EPOCHS, BATCH, MAX_TRAIN, HIDDEN, MIN_STEPS, MAX_EPOCHS = 3, 128, 20_000, 128, 600, 20
# Bumped whenever the classifiers change, so that caches of an older kind are retrained.
CLASSIFIER_VERSION = 2
JOINT_SAMPLES = 1000  # draws of p(z) the joint coherence takes at most (an evaluation's prior samples, capped)


def class_modality(specs) -> str | None:
    """The name of the first categorical modality (the class), or None."""
    return next((s.name for s in specs if s.kind == "categorical"), None)


class Classifier(nn.Module):
    """x ``[B, *shape]`` in [0, 1] → class logits ``[B, C]``.

    An image of at least 8×8 pixels goes through two strided convolutions (32 and 64 channels,
    4×4, stride 2, SiLU) before the linear layers, so that a digit on a textured background
    (PolyMNIST) is told apart; anything else is flattened: HIDDEN, SiLU, C.
    """

    def __init__(self, shape, classes: int, hidden: int = HIDDEN):
        super().__init__()
        shape = tuple(shape)
        if len(shape) == 3 and min(shape[1:]) >= 8:
            channels, height, width = shape
            features = nn.Sequential(nn.Conv2d(channels, 32, 4, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.SiLU())
            size = 64 * (height // 4) * (width // 4)
        else:
            features, size = nn.Identity(), math.prod(shape)
        self.net = nn.Sequential(features, nn.Flatten(), nn.Linear(size, hidden), nn.SiLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


def _accuracy(classifier, data, name: str, label: str, batch: int = 1000) -> float:
    right = 0
    with torch.inference_mode():
        for _, b in data.batches(batch):
            right += int((classifier(b[name]).argmax(-1) == b[label]).sum())
    return right / data.n


def train_classifiers(train, test, specs, seed: int = 0) -> dict:
    """One classifier per image/binary modality: ``{"state": {name: state_dict}, "accuracy": {name: test accuracy}}``.

    Args:
        train, test: :class:`~mvae_cli.engine.data.SplitData` of the training and test splits
            (fully observed).
        specs: the dataset's modalities; the class is :func:`class_modality`.
    """
    label = class_modality(specs)
    classes = next(s.classes for s in specs if s.name == label)
    generator = torch.Generator().manual_seed(seed)
    out = {"state": {}, "accuracy": {}}
    n = min(train.n, MAX_TRAIN)
    for spec in specs:
        if spec.kind not in CLASSIFIER_KINDS:
            continue
        torch.manual_seed(seed)
        model = Classifier(spec.shape, classes).to(train.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps_per_epoch = -(-n // BATCH)
        # a small training split gets more epochs, towards MIN_STEPS steps (at most MAX_EPOCHS)
        for _ in range(max(EPOCHS, min(MAX_EPOCHS, -(-MIN_STEPS // steps_per_epoch)))):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, BATCH):
                b = train.batch(order[start:start + BATCH])
                loss = nn.functional.cross_entropy(model(b[spec.name]), b[label])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        out["state"][spec.name] = {k: v.cpu() for k, v in model.state_dict().items()}
        out["accuracy"][spec.name] = _accuracy(model, test, spec.name, label)
    return out


def classifiers_path(dataset_path: str | Path) -> Path:
    dataset_path = Path(dataset_path)
    return dataset_path.with_name(dataset_path.name + ".classifiers.pt")


def _load_cached(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def load_or_train_classifiers(dataset_path, train, test, specs, device) -> tuple[dict, dict]:
    """The cached classifiers of a dataset file, trained first where the cache is missing or stale
    (another file of the same name: the key is its size and modification time).

    Returns:
        ``({name: Classifier in eval mode}, {name: test accuracy})``.
    """
    path, stat = classifiers_path(dataset_path), Path(dataset_path).stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "modalities": [s.name for s in specs],
           "version": CLASSIFIER_VERSION}
    cached = _load_cached(path)
    if cached is None or cached.get("key") != key:
        with exclusive_lock(path):  # an evaluation beside this one (a sweep's --jobs) may be training them
            cached = _load_cached(path)
            if cached is None or cached.get("key") != key:
                cached = {"key": key, **train_classifiers(train, test, specs)}
                with atomic_path(path) as tmp:
                    torch.save(cached, tmp)
    classes = next(s.classes for s in specs if s.name == class_modality(specs))
    models = {}
    for spec in specs:
        if spec.name in cached["state"]:
            model = Classifier(spec.shape, classes)
            model.load_state_dict(cached["state"][spec.name])
            models[spec.name] = model.to(device).eval()
    return models, dict(cached["accuracy"])


def _classify(model, name: str, z: torch.Tensor, classifiers: dict, label: str) -> torch.Tensor:
    """The class of modality ``name`` decoded at ``z [B, D]``: ``long [B]``."""
    params = model.decode(name, z)
    if name == label:
        return params.argmax(dim=-1)
    return classifiers[name](model.likelihoods[name].mean(params.float())).argmax(dim=-1)  # what figures draw


@torch.inference_mode()
def coherence(model, data, classifiers: dict, *, limit: int | None = None, prior_samples: int = JOINT_SAMPLES,
              seed: int = 0, batch_size: int = 500) -> dict:
    """Cross-modal and joint coherence of ``model`` on ``data`` (the first ``limit`` examples).

    Args:
        model: a model in eval mode (``posterior``, ``decode``, ``posterior_reason``).
        data: a fully observed :class:`~mvae_cli.engine.data.SplitData`.
        classifiers: ``{name: module x → logits}`` for every non-class modality to score.

    Returns:
        ``{"cross": {target: {size: share}}, "cross_by_size": {size: mean over targets},
        "joint": share or None}``; sizes are strings (JSON keys).
    """
    label = class_modality(model.specs)
    scorable = [n for n in model.names if (n == label or n in classifiers) and model.generation_reason([n]) is None]
    n = data.n if limit is None else min(limit, data.n)
    generator = torch.Generator().manual_seed(seed)
    plan = {t: [(size, list(subset)) for size in range(1, len(model.names))
                for subset in itertools.combinations([m for m in model.names if m != t], size)
                if model.posterior_reason(list(subset)) is None] for t in scorable}
    used = {m for subsets in plan.values() for _, subset in subsets for m in subset}
    shown = torch.tensor([m in used for m in model.names], device=data.device)
    right: dict[str, dict[int, list]] = {t: {} for t in scorable}  # size -> [hits (a tensor), examples]
    for start in range(0, n, batch_size):
        batch = data.batch(torch.arange(start, min(start + batch_size, n)))
        truth = batch[label]
        experts = model.encode(batch, shown.expand(truth.shape[0], -1))  # every encoder once, as the estimator
        for target in scorable:
            for size, subset in plan[target]:
                q = model.posterior(batch, subset, experts=experts)
                eps = torch.randn(truth.shape[0], 1, model.latent_dim, generator=generator).to(truth.device)
                z = q.rsample(eps, 0, 1).squeeze(1)
                hit = (_classify(model, target, z, classifiers, label) == truth).sum()
                tally = right[target].setdefault(size, [0, 0])
                tally[0] = tally[0] + hit  # summed on the device: one host read per figure, at the end
                tally[1] += truth.shape[0]
    cross = {t: {str(s): int(h) / c for s, (h, c) in sorted(sizes.items())} for t, sizes in right.items() if sizes}
    by_size: dict[str, list[float]] = {}
    for sizes in cross.values():
        for s, share in sizes.items():
            by_size.setdefault(s, []).append(share)
    joint = None
    if len(scorable) >= 2:
        z = model.prior_from_noise(torch.randn(prior_samples, model.latent_dim, generator=generator).to(data.device))
        predictions = torch.stack([_classify(model, t, z, classifiers, label) for t in scorable])
        joint = float((predictions == predictions[:1]).all(dim=0).double().mean())
    return {"cross": cross, "cross_by_size": {s: sum(v) / len(v) for s, v in sorted(by_size.items())}, "joint": joint}
