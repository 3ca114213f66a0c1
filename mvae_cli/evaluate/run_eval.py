"""Evaluate a trained run: the MVAE paper's Tables 2–5 and label accuracy, written to ``eval.json``.

One :class:`~mvae_cli.eval_config.EvalConfig` says what to compute; :func:`evaluate_run` loads
the run, plans the evaluation from its model (:func:`~mvae_cli.evaluate.plan.plan_evaluation`:
the proposals q(z|x), q(z|x,y), q(z|y), the targets, and the reason each figure the model does
not define is null, never zero), computes and assembles the likelihood figures and accuracy
(:func:`~mvae_cli.evaluate.model_eval.evaluate_model`), then adds:

- the latent diagnostics of every unimodal posterior (:mod:`~mvae_cli.evaluate.diagnostics`);
- beside the accuracy, for every y with classes, chance and a classifier trained on the paired
  rows of the run's mask only (:mod:`~mvae_cli.evaluate.baseline`): the lines the model must beat;
- the fair baselines (:mod:`~mvae_cli.evaluate.fair`): a linear probe on the model's q(z|x) fitted on
  the paired rows only, and the same probe on an image-only VAE trained on every image;
- coherence and the latent probe (:mod:`~mvae_cli.evaluate.coherence`,
  :mod:`~mvae_cli.evaluate.latent_probe`).

The likelihood figures, per proposal:

- log p(x) and log p(x, y) (Eqs. 5, 6 and their joint analogues);
- log p(x|y) = log p(x, y) − log p(y), with log p(y) = log E_p(z)[p(y|z)] from prior
  samples shared by every example (Eq. 7), under q(z|y) as the paper writes it, and under
  q(z|x) and q(z|x,y);
- the variance of the log importance weights of the marginal, joint and conditional
  targets (Tables 4 and 5) under the proposal each estimate uses: per example over the K
  particles, averaged over examples. The conditional log weights are the joint ones minus
  log p̂(y), a constant per example, so under one proposal their variance equals the joint
  one's; q(z|y) gives log p(x|y) its own.

Each likelihood figure is the mean over examples, its standard error and the mean
effective sample size (Σw)²/Σw² of its weights. The library never prints: progress goes
to a callback ``progress(done, total)`` in examples.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mvae_cli.atomic import atomic_path, exclusive_lock, write_json
from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData, binarized_modalities
from mvae_cli.engine.device import autocast_networks, memory_budget, select_device
from mvae_cli.engine.run import (build_model, check_dataset, latest_run, load_trained, read_config, read_run_info,
                                 run_specs)
from mvae_cli.model.model import primary_modality
from mvae_cli.errors import UserError
from mvae_cli.eval_config import UNLESS_DEFAULT, EvalConfig
from mvae_cli.evaluate.accuracy import attribute_names
from mvae_cli.evaluate.baseline import (VALID_LIMIT, baselines_path, cached_baseline, cached_baselines, keep_baselines,
                                       paired_baselines, paired_baselines_of_runs, paired_rows)
from mvae_cli.evaluate.coherence import JOINT_SAMPLES, class_modality, coherence, load_or_train_classifiers
from mvae_cli.evaluate.diagnostics import eval_diagnostics
from mvae_cli.evaluate.fair import image_vae, image_vae_recipe, pair_probe, targets
from mvae_cli.evaluate.latent_probe import probe_accuracy
from mvae_cli.evaluate.model_eval import Progress, evaluate_model
from mvae_cli.evaluate.plan import plan_evaluation
from mvae_cli.recipe import check_eval

EVAL_FILE = "eval.json"
EXAMPLES_FILE = "eval_examples.npz"  # every figure per test example, for paired comparisons between runs
# Default budget: this fraction of free RAM (CPU) or free GPU memory.
MEMORY_FRACTION = 0.25
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}


def parse_size(text: str | int) -> int:
    """``"2GB"``, ``"512M"``, ``"1.5g"`` or a number of bytes → bytes (binary units).

    Raises:
        UserError: not a positive size.
    """
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper().replace("IB", "B") if match else None
        if not match or unit not in _UNITS:
            raise UserError(f"--max-memory: {text!r} is not a size (give e.g. 2GB, 512MB or a number of bytes)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UserError(f"--max-memory must be positive, got {text!r}")
    return value


def _run_mask(run_dir: Path) -> np.ndarray:
    mask_path = Path(run_dir) / "mask.npy"
    if not mask_path.is_file():
        raise UserError(f"{run_dir} has no mask.npy (the training mask): retrain the run, or pass --no-baseline")
    return np.load(mask_path)


def round_reporter(stage: Callable[[str], None]) -> Callable[[int, int], None]:
    """``progress(done, most)`` of the paired-only classifiers' validation rounds as a ``stage`` line
    every tenth of the most rounds they can take (early stopping usually ends them sooner)."""
    def report(done: int, most: int) -> None:
        if 0 < done < most and done % max(1, most // 10) == 0:
            stage(f"paired-only classifier: validation round {done} (early stopping ends it by round {most})")
    return report


def _baseline_settings(recipe, x: str, y: Sequence[str], n_test: int, split: str, binarize) -> dict:
    """Everything the paired-only classifiers' figures depend on besides the file and the mask (their cache key)."""
    m = recipe.model
    return {"x": x, "y": list(y), "latent_dim": m.latent_dim, "hidden": m.hidden, "image_net": m.image_net,
            "seed": recipe.seed, "n_test": n_test, "split": split, "binarize": sorted(binarize or [])}


def _baselines(run_dir: Path, recipe, dataset, test: SplitData, split: str, x: str, y: Sequence[str], n_test: int,
               budget: int, device: torch.device, binarize, stage=None) -> dict:
    """Chance and the paired-only classifiers on the run's own mask (``mask.npy``), scored on the
    same ``n_test`` examples as the model; computed once per dataset file, mask and settings
    (:func:`~mvae_cli.evaluate.baseline.cached_baselines`). ``stage(description)`` every tenth of the
    most validation rounds the classifiers can take, while they train."""
    mask = _run_mask(run_dir)
    m = recipe.model

    def compute() -> dict:
        train = SplitData(dataset, "train", device, mask, budget, binarize=binarize)
        valid = SplitData(dataset, "valid", device, None, budget, binarize=binarize)
        return paired_baselines(dataset.specs, x, y, mask, train.batch, valid.batch, min(VALID_LIMIT, valid.n),
                                test.batch, n_test, latent_dim=m.latent_dim, hidden=m.hidden,
                                image_net=m.image_net, seed=recipe.seed, device=device,
                                progress=None if stage is None else round_reporter(stage))

    settings = _baseline_settings(recipe, x, y, n_test, split, binarize)
    return cached_baselines(dataset.path, mask, settings, compute)


def precompute_baselines(run_dirs: Sequence[Path], configs: Sequence[EvalConfig], device: str = "auto",
                         stage: Callable[[str], None] | None = None, deferred: list | None = None) -> int:
    """The paired-only classifiers the evaluations of ``run_dirs`` (with ``configs``) will need, trained
    before them: those of the runs of one dataset, networks and supervision level (their seeds) as one
    stack (:func:`~mvae_cli.evaluate.baseline.paired_baselines_of_runs`), and kept in the dataset's cache
    (:func:`~mvae_cli.evaluate.baseline.cached_baselines`), where each evaluation then finds its figures.
    What is cached already, or belongs to an evaluation without baselines, is left alone.

    Args:
        deferred: where a group another process is training goes: its runs are added to ``deferred`` and
            not waited for (the caller evaluates its other runs meanwhile, then calls again with
            these, which waits and finds them cached); None: wait for them here.

    Returns:
        The runs whose figures were computed here.
    """
    torch_device = select_device(device)
    jobs: dict[str, list] = {}
    dirs: dict[str, list] = {}
    rows: dict[str, int] = {}  # each group's paired rows
    for run_dir, config in zip(run_dirs, configs):
        if not config.baseline:
            continue
        run_dir = Path(run_dir)
        recipe, info = read_config(run_dir), read_run_info(run_dir)
        path, mask = run_dataset_path(info), _run_mask(run_dir)
        model = build_model(recipe, run_specs(info))
        plan = plan_evaluation(model, config.x, config.y)
        binarize = binarized_modalities(recipe.data.binarize, model)
        with read_dataset(path) as dataset:
            if config.split not in dataset.sizes:
                continue
            n_test = dataset.sizes[config.split] if config.limit is None else min(config.limit, dataset.sizes[config.split])
        settings = _baseline_settings(recipe, plan.x, plan.y, n_test, config.split, binarize)
        if cached_baseline(path, mask, settings) is not None:
            continue
        # one group per level: the runs whose paired rows are as many (their classifiers train as one stack)
        names = [s.name for s in run_specs(info)]
        sizes = [int(paired_rows(mask, names.index(plan.x), names.index(name)).size) for name in plan.y]
        shared = json.dumps({**settings, "seed": None, "path": str(path.resolve()), "rows": sizes}, sort_keys=True)
        jobs.setdefault(shared, []).append((recipe, path, mask, settings))
        dirs.setdefault(shared, []).append(run_dir)
        rows[shared] = sum(sizes)
    # Each group (a level's seeds) under its own lock (a hidden empty file beside the cache): processes
    # side by side (a sweep's --jobs, whose stacks may share their masks) first take the groups nobody
    # holds, the largest first, then wait for the others, which they then mostly find in the cache.
    done, waiting = 0, sorted(jobs.items(), key=lambda item: -rows[item[0]])
    for wait in (False, True):
        later = []
        for shared, members in waiting:
            key = hashlib.sha256(shared.encode()).hexdigest()[:16]
            cache = baselines_path(members[0][1])
            with exclusive_lock(cache.with_name(f"{cache.name}.{key}"), wait) as held:
                if not held:
                    later.append((shared, members))
                    continue
                done += _train_baselines_group(members, torch_device, stage)
        waiting = later
        if deferred is not None:
            deferred.extend(run_dir for shared, _ in later for run_dir in dirs[shared])
            break
    return done


def _train_baselines_group(members: list, device: torch.device, stage) -> int:
    """The paired-only classifiers of ``members`` (``(recipe, dataset path, mask, settings)`` of one
    group) trained as one stack and kept in the cache, but for those found there: how many were trained."""
    recipe, path, _, settings = members[0]
    members = [member for member in members if cached_baseline(path, member[2], member[3]) is None]
    if not members:  # another process trained them meanwhile
        return 0
    m = recipe.model
    with read_dataset(path) as dataset:
        budget = memory_budget(device, MEMORY_FRACTION)
        splits = [SplitData(dataset, name, device, None, budget, binarize=settings["binarize"])
                  for name in ("train", "valid", settings["split"])]
        results = paired_baselines_of_runs(
            dataset.specs, settings["x"], settings["y"], [mask for _, _, mask, _ in members],
            [r.seed for r, _, _, _ in members], splits[0].batch, splits[1].batch, min(VALID_LIMIT, splits[1].n),
            splits[2].batch, settings["n_test"], latent_dim=m.latent_dim, hidden=m.hidden,
            image_net=m.image_net, device=device,
            progress=None if stage is None else round_reporter(stage))
    with exclusive_lock(baselines_path(path)):  # the cache file's own lock, for the write
        keep_baselines(path, [(mask, s, result) for (_, _, mask, s), result in zip(members, results)])
    return len(members)


def _fair_baselines(run_dir: Path, model, recipe, dataset, train: Callable[[], SplitData], test: SplitData, x: str,
                    y: Sequence[str], n_test: int, device: torch.device, stage) -> dict:
    """The fair baselines (:mod:`~mvae_cli.evaluate.fair`): ``paired_probe`` and ``vae_probe``, each
    ``{y: accuracy, "mean"}``, or null with its reason under ``not_defined_fair``. ``train()``: the
    training split."""
    if not targets(dataset.specs, y) or "train" not in dataset.sizes:
        return {}
    mask, train = _run_mask(run_dir), train()
    out, why = {}, {}
    reason = model.posterior_reason([x])
    if reason is None:
        out["paired_probe"] = pair_probe(model, dataset.specs, x, y, mask, train, test, n_test)
    else:
        out["paired_probe"], why["paired_probe"] = None, reason
    primary = primary_modality(dataset.specs)
    if x != primary:
        out["vae_probe"], why["vae_probe"] = None, (f"the image-only VAE models the primary modality {primary}, "
                                                     f"not x = {x}")
    else:
        vae = image_vae(image_vae_recipe(recipe, dataset.path, x, device.type), device, stage)
        out["vae_probe"] = pair_probe(vae, dataset.specs, x, y, mask, train, test, n_test)
    return {**out, "not_defined_fair": why}


PROBE_TRAIN = 1000  # training examples the latent probe is fitted on


def _class_figures(model, dataset, data: SplitData, train: Callable[[], SplitData], config: EvalConfig, device,
                   budget: int, binarize) -> dict:
    """Coherence and the latent probe (:mod:`~mvae_cli.evaluate.coherence`,
    :mod:`~mvae_cli.evaluate.latent_probe`): null, with the reason under ``not_defined``, for a
    dataset without a class modality or a training split. ``train()``: the training split."""
    if class_modality(model.specs) is None or "train" not in dataset.sizes or "test" not in dataset.sizes:
        why = "the dataset has no categorical (class) modality" if class_modality(model.specs) is None else \
            "the dataset has no train and test splits to fit the classifiers on"
        return {"coherence": None, "probe": None, "not_defined_class": why}
    train = train()
    test = data if config.split == "test" else SplitData(dataset, "test", device, None, budget, binarize=binarize)
    classifiers, ceiling = load_or_train_classifiers(dataset.path, train, test, dataset.specs, device)
    figures = coherence(model, data, classifiers, limit=config.limit,
                        prior_samples=min(config.prior_samples, JOINT_SAMPLES), seed=config.seed)
    return {"coherence": {**figures, "classifier_accuracy": ceiling},
            "probe": probe_accuracy(model, train, data, n_train=PROBE_TRAIN, limit=config.limit)}


def run_dataset_path(info: dict) -> Path:
    """The dataset file of a run (``run.json``): its path as given at training time where that
    still exists relative to the current directory, else its absolute path.

    Raises:
        UserError: neither exists.
    """
    path, abspath = Path(info["dataset"]["path"]), Path(info["dataset"]["abspath"])
    if path.is_file():
        return path
    if abspath.is_file():
        return abspath
    raise UserError(f"the run's dataset is gone: neither {path} nor {abspath} exists")


def evaluate_run(
    run_dir: str | Path | None = None,
    config: EvalConfig | None = None,
    *,
    device: str = "auto",
    max_memory: int | str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate a run directory as ``config`` says and write ``RUN_DIR/eval.json`` atomically
    (and every figure per example to ``RUN_DIR/eval_examples.npz``).

    Args:
        run_dir: the run (default: the most recent one under ``runs/``).
        config: what to compute (default: :class:`~mvae_cli.eval_config.EvalConfig`'s defaults);
            validated as a recipe's ``eval`` section (:func:`~mvae_cli.recipe.check_eval`).
        device: ``auto``, ``cpu`` or ``cuda``.
        max_memory: bytes (or a size such as ``"2GB"``) for one chunk of rows;
            default a quarter of free RAM or GPU memory.
        batch_size: examples per batch (progress granularity; the figures do not depend on it).
        progress: ``progress(done, total)`` in examples.
        stage: ``stage(description)`` as each part after the likelihoods starts (the latent diagnostics,
            the paired-only classifier, coherence and the latent probe), so a caller can show that
            something is running; the part ends when the next one starts or the call returns.

    Returns:
        The contents of ``eval.json``.

    Raises:
        UserError: not a run directory, a missing checkpoint or split, an unknown
            modality, x also in y, or a value out of range.
    """
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    read_config(run_dir)  # a clear error for a directory that is not a run
    config = check_eval(config or EvalConfig())
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    budget = parse_size(max_memory) if max_memory is not None else None
    torch_device = select_device(device)
    recipe, info, model = load_trained(run_dir, config.checkpoint, torch_device)
    model = autocast_networks(model, torch_device, config.precision)
    plan = plan_evaluation(model, config.x, config.y)
    budget = budget or memory_budget(torch_device, MEMORY_FRACTION)

    announce = stage or (lambda description: None)
    started = time.perf_counter()
    check_dataset(run_dir, info, run_dataset_path(info))
    with read_dataset(run_dataset_path(info)) as dataset:
        if config.split not in dataset.sizes:
            raise UserError(f"{dataset.path} has no {config.split!r} split (it has: {', '.join(dataset.sizes)})")
        binarize = binarized_modalities(recipe.data.binarize, model)
        data = SplitData(dataset, config.split, torch_device, None, budget, binarize=binarize)
        timings, lap = {}, [started]

        def timed(part: str) -> None:  # seconds since the previous part ended
            now = time.perf_counter()
            timings[part], lap[0] = now - lap[0], now

        figures = evaluate_model(model, data, plan, config, budget_bytes=budget, batch_size=batch_size,
                                 progress=progress, attributes=attribute_names(dataset.attrs, model.specs))
        timed("likelihoods")
        announce("latent diagnostics")
        figures.update(eval_diagnostics(model, data, figures["n_examples"], config.seed))  # "latent", "latent_warnings"
        timed("latent_diagnostics")
        if config.baseline:
            announce("paired-only classifier")
            figures.update(_baselines(run_dir, recipe, dataset, data, config.split, plan.x, plan.y,
                                      figures["n_examples"], budget, torch_device, binarize, announce))
            timed("baseline")
        loaded: list[SplitData] = []

        def train_split() -> SplitData:  # read once, for the class figures and the fair baselines
            if not loaded:
                loaded.append(SplitData(dataset, "train", torch_device, None, budget, binarize=binarize))
            return loaded[0]

        announce("coherence and latent probe")
        figures.update(_class_figures(model, dataset, data, train_split, config, torch_device, budget, binarize))
        timed("coherence_and_probe")  # the coherence classifiers' first training too
        if config.baseline:  # last: a first evaluation trains the image-only VAE here
            announce("fair baselines: linear probes fitted on the paired rows")
            figures.update(_fair_baselines(run_dir, model, recipe, dataset, train_split, data, plan.x, plan.y,
                                           figures["n_examples"], torch_device, announce))
            timed("fair_baselines")
    figures["not_defined"].update(figures.pop("not_defined_fair", {}))
    class_reason = figures.pop("not_defined_class", None)
    if class_reason:
        figures["not_defined"].update({"coherence": class_reason, "probe": class_reason})
    result = {
        "particles": config.particles, "prior_samples": config.prior_samples, "split": config.split,
        "checkpoint": config.checkpoint, "n_examples": figures.pop("n_examples"), "x": plan.x, "y": list(plan.y),
        "seconds": time.perf_counter() - started, "seconds_by_part": timings, **figures,
    }
    defaults = EvalConfig()
    result.update({name: getattr(config, name) for name in UNLESS_DEFAULT  # precision: only where not fp32
                   if getattr(config, name) != getattr(defaults, name)})
    per_example = result.pop("per_example")
    with atomic_path(run_dir / EXAMPLES_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, split=np.array(config.split), n_examples=np.array(result["n_examples"]),
                 **{key: np.asarray(values, dtype=np.float64) for key, values in per_example.items()})
    write_json(run_dir / EVAL_FILE, result)
    return result
