"""The training loop, in phases: setup, restore, epoch, end of epoch, finish.

:func:`train` checks the run directory and opens the dataset; :func:`setup` builds everything a
run needs (mask, seeding, model, optimiser, data, objective) into a :class:`Session`;
:func:`restore` resumes it from ``last.pt`` (or starts the run directory); :func:`run_epoch`
trains one epoch; :func:`end_epoch` validates, writes the epoch's ``metrics.jsonl`` line and the
checkpoints; :func:`finish` marks the run finished. What is not training (latent diagnostics,
sample grids, trackers) is a hook the caller registers (:mod:`~mvae_cli.engine.hooks`).

The library never prints: progress goes to an optional callback
``progress(event: str, **info)`` with events ``start``, ``step`` and ``epoch``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mvae_cli import __version__
from mvae_cli.atomic import atomic_path, check_folder, write_json, write_text
from mvae_cli import zoo
from mvae_cli.data.format import DatasetFile, read_dataset
from mvae_cli.data.layout import fingerprint
from mvae_cli.data.masks import build_mask
from mvae_cli.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mvae_cli.engine.data import SplitData, binarized_modalities, dynamic_binarize
from mvae_cli.engine.device import autocast, memory_budget, peak_memory_mb, select_device
from mvae_cli.engine.distributed import (World, all_reduce_gradients, all_reduce_sum, broadcast_parameters,
                                         current_world, gather_objects, shard)
from mvae_cli.engine.hooks import Hooks
from mvae_cli.engine.run import (build_model, check_dataset, is_run_dir, read_config, read_mask, read_run_info,
                                 write_config)
from mvae_cli.errors import UserError, file_fault
from mvae_cli.model.model import parameter_counts
from mvae_cli.model.protocol import Model
from mvae_cli.model.rows import with_host_mask
from mvae_cli.objectives import MVAEObjective, Objective, default_k
from mvae_cli.recipe import Recipe, recipe_to_dict

Progress = Callable[..., None]
# Keys that may differ between a run on disk and the recipe that resumes it.
_RESUMABLE_CHANGES = ("epochs", "device", "eval", "grid", "checkpoint_every", "checkpoint_minutes", "nproc",
                      "trackers", "slurm")
# Seconds between reads of the loss on the host (progress, divergence): each read waits for the device.
READ_EVERY_S = 0.5


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_valid_elbo: float
    seconds: float
    resumed: bool


def resolve_mask(dataset: DatasetFile, recipe: Recipe) -> tuple[np.ndarray, dict]:
    """The training mask of a recipe: from the file when it holds one for that level and seed,
    else built by the same function ``mvae prepare`` uses; fully observed without a level."""
    n, m = dataset.sizes["train"], len(dataset.specs)
    if recipe.supervision is None and recipe.keep_prob is None:
        return np.ones((n, m), dtype=bool), {"kind": "full", "value": 1.0, "seed": recipe.seed, "source": "none"}
    kind, value = ("supervision", recipe.supervision) if recipe.supervision is not None else ("keep_prob", recipe.keep_prob)
    stored = dataset.find_mask(kind, value, recipe.seed)
    if stored is not None:
        mask, source = stored, "file"
    else:
        mask, source = build_mask(kind, value, n, m, recipe.seed), "generated"
    return mask, {"kind": kind, "value": value, "seed": recipe.seed, "source": source}


def _comparable(recipe: Recipe) -> dict:
    d = recipe_to_dict(recipe)
    for key in _RESUMABLE_CHANGES:
        d.pop(key, None)
    return d


def _checkpoint_due(recipe: Recipe, epoch: int, seconds_since: float) -> bool:
    """Whether ``last.pt`` is written after ``epoch``: every ``checkpoint_every`` epochs, after
    ``checkpoint_minutes`` since the last one, and always after the final epoch."""
    timed = recipe.checkpoint_minutes is not None and seconds_since >= 60 * recipe.checkpoint_minutes
    return epoch >= recipe.epochs or epoch % recipe.checkpoint_every == 0 or timed


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def validation_elbo(model, data: SplitData, device: torch.device, precision: str, batch_size: int = 1000,
                    objective=None) -> float:
    """Mean of the objective's own bound (``objective.bound``, β = 1, one sample; default the MVAE's
    ELBO of all modalities) over a fully observed split."""
    objective = objective or MVAEObjective()
    model.eval()
    total = 0.0
    for _, batch in data.batches(batch_size):
        with autocast(device, precision):
            total += float(objective.bound(model, batch).sum())
    model.train()
    return total / data.n


def _check_finite(step_losses: torch.Tensor, first_step: int, epoch: int, run_dir: Path, world: World) -> None:
    """Raise :class:`TrainingDiverged` naming the first step (of this epoch's ``[S]`` losses) that
    was not finite on any rank."""
    bad = all_reduce_sum((~torch.isfinite(step_losses)).float(), world)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        value = float(step_losses[b]) if not math.isfinite(float(step_losses[b])) else math.nan  # another rank's
        last = run_dir / "last.pt"
        kept = (f"the last good checkpoint is {last}" if last.is_file()
                else "no checkpoint was written yet (the first comes at the end of an epoch)")
        raise TrainingDiverged(f"the loss became {value} at step {first_step + b} (epoch {epoch + 1}); {kept}; "
                               "lower the learning rate or use fp32")


@dataclass
class Session:
    """One run being trained: what :func:`setup` builds and the phases after it share.

    ``epoch``, ``step``, ``best`` and ``train_seconds`` are the state a checkpoint saves.
    """

    recipe: Recipe
    run_dir: Path
    dataset: DatasetFile
    device: torch.device
    world: World
    resumed: bool
    mask: np.ndarray
    mask_info: dict
    train_rows: torch.Tensor
    model: Model
    binarized: list[str]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_data: SplitData
    valid_data: SplitData
    steps_per_epoch: int
    objective: Objective
    k: int
    shuffle: torch.Generator
    hooks: Hooks = ()
    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    train_seconds: float = 0.0
    info: dict = field(default_factory=dict)
    last_saved: float = field(default_factory=time.monotonic)


@dataclass
class EpochTotals:
    """What one epoch of :func:`run_epoch` adds up: the per-step losses (on the device), the rows
    each step showed on this rank, the metric sums (weighted by rows), and its seconds."""

    step_losses: torch.Tensor
    shown: list[int]
    sums: dict
    seconds: float


def train(recipe: Recipe, run_dir: str | Path, progress: Progress | None = None, hooks: Hooks = ()) -> TrainResult:
    """Train (or resume) the run in ``run_dir`` to ``recipe.epochs`` epochs.

    A directory that already holds this run (same recipe up to epochs, device and eval)
    is resumed from ``last.pt``; one that holds a different run is an error. The dataset file
    must exist (the callers prepare a missing one first: ``mvae_cli.data.prepare.ensure_dataset``).

    Args:
        hooks: what the run does besides training (:class:`~mvae_cli.engine.hooks.TrainingHook`),
            called on the main rank; a recipe with ``trackers`` needs a hook that ``tracks``.
    """
    progress = progress or (lambda event, **info: None)
    session = open_run(recipe, Path(run_dir), hooks)
    status = "failed"
    try:
        announce(session, progress)
        while session.epoch < recipe.epochs:
            end_epoch(session, run_epoch(session, progress), progress)
        result = finish(session)
        status = "finished"
        return result
    finally:
        close_run(session, status)


def open_run(recipe: Recipe, run_dir: Path, hooks: Hooks = ()) -> Session:
    """Check ``run_dir`` and the dataset, start the hooks, :func:`setup` and :func:`restore` the run.

    The caller ends it with :func:`close_run` (which closes the hooks and the dataset); a failure here
    closes them itself.
    """
    check_folder(run_dir, "the run directory")
    resumed = is_run_dir(run_dir) and (run_dir / "last.pt").is_file()
    if is_run_dir(run_dir):
        if _comparable(read_config(run_dir)) != _comparable(recipe):
            raise UserError(f"{run_dir} already holds a different run; choose another --out or resume it with --resume {run_dir}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} exists, is not empty and is not a run directory; choose another --out")
    if recipe.trackers and not any(hook.tracks for hook in hooks):
        raise ValueError("recipe.trackers is set but no hook sends the trackers their lines "
                         "(pass mvae_cli.engine.trackers.TrackerHook)")
    world = current_world()
    world.barrier()  # every rank has looked at run_dir before rank 0 writes to it
    device = select_device(recipe.device)
    autocast(device, recipe.precision)  # refuses mixed precision off CUDA before any work
    data_path = recipe.data.resolved_path()
    if not data_path.is_file():
        if resumed:  # rebuilt, it would not be the same file
            raise UserError(f"{data_path}, the dataset {run_dir} was trained on, does not exist; put it back to resume the run")
        raise UserError(f"the dataset file {data_path} does not exist; build it with `mvae prepare --dataset "
                        f"{recipe.data.dataset} --out {data_path}`")
    dataset = read_dataset(data_path)
    hooks = list(hooks) if world.is_main else []
    try:
        for hook in hooks:
            hook.start(recipe, run_dir)
        if resumed:  # before anything is written: a changed file would be trained on silently
            check_dataset(run_dir, read_run_info(run_dir), data_path)
        session = setup(recipe, run_dir, dataset, device, resumed, world, hooks)
        restore(session)
    except BaseException:
        for hook in hooks:
            hook.close("failed")
        dataset.close()
        raise
    return session


def announce(session: Session, progress: Progress) -> None:
    """The ``start`` event of a run about to train; the model in training mode."""
    progress("start", epochs=session.recipe.epochs, start_epoch=session.epoch, steps_per_epoch=session.steps_per_epoch,
             n_examples=int(session.train_rows.numel()), device=str(session.device), resumed=session.resumed)
    session.model.train()
    session.last_saved = time.monotonic()


def close_run(session: Session, status: str) -> None:
    """Close the run's hooks (with ``status``: finished or failed) and its dataset file."""
    for hook in session.hooks:
        hook.close(status)
    session.dataset.close()


def setup(recipe: Recipe, run_dir: Path, dataset: DatasetFile, device: torch.device, resumed: bool, world: World,
          hooks: Hooks = ()) -> Session:
    """Everything a run needs, built in a fixed order (the RNG draws of a fresh run and of its
    resume are the same): the mask, the seeds, the model, the optimiser, the data, the objective."""
    if "valid" not in dataset.sizes:
        raise UserError(f"{dataset.path} has no valid split to validate on")
    specs = dataset.specs
    mask, mask_info = resolve_mask(dataset, recipe)
    if resumed:
        mask = read_mask(run_dir)
    train_rows = torch.from_numpy(np.flatnonzero(mask.any(axis=1)))
    if train_rows.numel() == 0:
        raise UserError("the training mask shows no modality of any example; raise the supervision or keep-prob level")
    if recipe.paired_repeat > 1:  # oversampling: the fully observed rows again, shuffled in with the rest
        paired_rows = torch.from_numpy(np.flatnonzero(mask.all(axis=1)))
        train_rows = torch.cat([train_rows, paired_rows.repeat(recipe.paired_repeat - 1)])
    paired_per_batch = _paired_per_batch(recipe, mask)
    if world.size > recipe.batch_size:
        raise UserError(f"{world.size} ranks cannot share batches of {recipe.batch_size}; use at most {recipe.batch_size} ranks")
    _seed_everything(recipe.seed)
    shuffle = torch.Generator().manual_seed(recipe.seed)
    model = build_model(recipe, specs).to(device)
    binarized = binarized_modalities(recipe.data.binarize, model)
    broadcast_parameters(model, world)
    if world.rank > 0:  # rank 0 draws the single-process noise; the others their own streams
        torch.manual_seed(recipe.seed + 7919 * world.rank)
        np.random.seed(recipe.seed + 7919 * world.rank)  # the objectives' random subsets
    # The fused kernel updates every parameter in one pass, deterministically.
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=recipe.precision == "fp16" and device.type == "cuda")
    budget = memory_budget(device, 0.25)
    train_data = SplitData(dataset, "train", device, mask, budget)
    valid_data = SplitData(dataset, "valid", device, None, budget, binarize=binarized)
    if paired_per_batch:
        others = int((mask.any(axis=1) & ~mask.all(axis=1)).sum())
        steps_per_epoch = math.ceil(others / (recipe.batch_size - paired_per_batch))
    else:
        steps_per_epoch = math.ceil(train_rows.numel() / recipe.batch_size)
    k = recipe.objective.k if recipe.objective.k is not None else default_k(len(specs))
    objective = build_objective(recipe, round(recipe.anneal_epochs * steps_per_epoch), k)
    return Session(recipe, run_dir, dataset, device, world, resumed, mask, mask_info, train_rows, model, binarized,
                   optimizer, scaler, train_data, valid_data, steps_per_epoch, objective, k, shuffle, hooks)


def _paired_per_batch(recipe: Recipe, mask: np.ndarray) -> int:
    """The paired rows of every batch under ``paired_share`` (0: batches drawn as the paper's)."""
    if recipe.paired_share is None:
        return 0
    if recipe.paired_repeat > 1:
        raise UserError("paired_share and paired_repeat both show the pairs more often; set one of them")
    n = round(recipe.paired_share * recipe.batch_size)
    if not 1 <= n <= recipe.batch_size - 1:
        raise UserError(f"paired_share={recipe.paired_share} gives {n} of a batch of {recipe.batch_size} to the paired "
                        f"rows; it must give between 1 and {recipe.batch_size - 1}")
    paired = mask.all(axis=1)
    if not paired.any() or not (mask.any(axis=1) & ~paired).any():  # nothing to mix: every row or none paired
        return 0
    return n


def epoch_order(s: "Session") -> torch.Tensor:
    """The training rows of one epoch, batch after batch (``batch_size`` at a time), from the run's
    shuffle stream: a fresh shuffle of them; with ``paired_share``, every batch ``p`` paired rows (a
    shuffled cycle of them) and ``batch_size - p`` of the others (one shuffled pass over them)."""
    recipe = s.recipe
    p = _paired_per_batch(recipe, s.mask)
    if not p:
        return s.train_rows[torch.randperm(s.train_rows.numel(), generator=s.shuffle)]
    paired = torch.from_numpy(np.flatnonzero(s.mask.all(axis=1)))
    others = torch.from_numpy(np.flatnonzero(s.mask.any(axis=1) & ~s.mask.all(axis=1)))
    others = others[torch.randperm(others.numel(), generator=s.shuffle)]
    cycles = math.ceil(s.steps_per_epoch * p / paired.numel())
    stream = torch.cat([paired[torch.randperm(paired.numel(), generator=s.shuffle)] for _ in range(cycles)])
    step = recipe.batch_size - p
    return torch.cat([torch.cat([stream[b * p:(b + 1) * p], others[b * step:(b + 1) * step]])
                      for b in range(s.steps_per_epoch)])


def build_objective(recipe: Recipe, anneal_steps: int, k: int) -> Objective:
    """The objective of the recipe's model, given exactly the settings it takes (the model table)."""
    entry = zoo.entry(recipe.model.name)
    own = {key: getattr(recipe.objective, key) for key in entry.objective_settings}
    if "k" in own:
        own["k"] = k
    return zoo.objective(recipe.model.name, anneal_steps=anneal_steps, beta=recipe.beta, free_bits=recipe.free_bits,
                         **own)


def restore(session: Session) -> None:
    """Resume ``session`` from ``last.pt`` (model, optimiser, RNG streams, counters, metrics.jsonl
    cut to the checkpoint), or start its run directory; then write config.yaml and run.json."""
    s, recipe, world = session, session.recipe, session.world
    metrics_path = s.run_dir / "metrics.jsonl"
    if s.resumed:
        state = load_checkpoint(s.run_dir / "last.pt", map_location=s.device)
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.scaler.load_state_dict(state["scaler"])
        if state["epoch"] > recipe.epochs:  # config.yaml would record fewer epochs than the weights had
            raise UserError(f"{s.run_dir} has trained {state['epoch']} epochs already, more than --epochs "
                            f"{recipe.epochs}; resume with --epochs {state['epoch']} or more, or train a new run")
        ranks = state.get("rank_rng")
        if ranks is not None and len(ranks) == world.size:
            set_rng_state(ranks[world.rank], s.shuffle)
        elif world.is_main:
            set_rng_state(state["rng"], s.shuffle)
        else:  # resumed with another number of ranks: same shuffle, fresh noise for this rank
            s.shuffle.set_state(state["rng"]["shuffle"])
            torch.manual_seed(recipe.seed + 7919 * world.rank + 104729 * state["epoch"])
            np.random.seed(recipe.seed + 7919 * world.rank + 104729 * state["epoch"])
        s.epoch, s.step, s.best, s.train_seconds = state["epoch"], state["step"], state["best_valid_elbo"], state["train_seconds"]
        lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        if world.is_main:
            write_text(metrics_path, "".join(f"{l}\n" for l in lines if _line_epoch(l) <= s.epoch))
    elif world.is_main:
        s.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(s.run_dir / "mask.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, s.mask)
        write_text(metrics_path, "")
    s.info = _run_info(s)
    if world.is_main:
        write_config(s.run_dir, recipe)  # on resume too: it records a changed number of epochs
        write_json(s.run_dir / "run.json", s.info)


def _line_epoch(line: str) -> float:
    """The epoch of a ``metrics.jsonl`` line; infinite for a line a kill cut short (dropped on resume:
    it was written after the checkpoint the run resumes from)."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _run_info(s: Session) -> dict:
    """run.json while training: the dataset, modalities, likelihoods, mask, model and device."""
    dataset, mask, recipe = s.dataset, s.mask, s.recipe
    return {
        "mvae_version": __version__,
        "dataset": {"name": dataset.name, "path": str(dataset.path), "abspath": str(dataset.path.resolve()),
                    "fingerprint": fingerprint(dataset.path)},
        "modalities": [{"name": sp.name, "kind": sp.kind, "likelihood": sp.likelihood, "shape": list(sp.shape),
                        "classes": sp.classes} for sp in dataset.specs],
        "likelihoods": {name: likelihood.describe() for name, likelihood in s.model.likelihoods.items()},
        "mask": {**s.mask_info, "n_train": int(mask.shape[0]), "n_shown": int(s.train_rows.numel()),
                 "n_paired": int(mask.all(axis=1).sum()), "paired_repeat": recipe.paired_repeat,
                 **({"paired_share": recipe.paired_share} if recipe.paired_share is not None else {})},
        "model": {"name": recipe.model.name, "parameters": parameter_counts(s.model)},
        "k": s.k, "device": str(s.device), "status": "training", "epochs_done": s.epoch,
        **({"ranks": s.world.size} if s.world.active else {}),
    }


def run_epoch(s: Session, progress: Progress) -> EpochTotals:
    """One epoch of optimiser steps over a fresh shuffle of the training rows."""
    recipe, world, device = s.recipe, s.world, s.device
    started = time.perf_counter()
    order = epoch_order(s)
    sums: dict[str, torch.Tensor | float] = {}
    # Each step's loss stays on the device (no host sync per step); read every READ_EVERY_S.
    step_losses = torch.zeros(s.steps_per_epoch, device=device)
    shown, first_step, loss_value, read_at = [], s.step, math.nan, -math.inf
    for b in range(s.steps_per_epoch):
        index = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
        local = shard(index, world)
        n, n_local = index.numel(), local.numel()
        s.optimizer.zero_grad(set_to_none=True)
        if n_local:
            # the host copy of the batch's mask: every shape that follows it is found on the host
            batch = with_host_mask(s.train_data.batch(local), s.mask[local.numpy()])
            if s.binarized:
                batch = dynamic_binarize(batch, s.binarized, recipe.seed, s.step)
            with autocast(device, recipe.precision):
                loss, terms = s.objective(s.model, batch, s.step)
            # Mean loss over this rank's rows, weighted by its share: the rank sum is the batch mean.
            # A batch without a row the objective uses (the CVAE's fully shown examples) has nothing to learn.
            if loss.requires_grad:
                s.scaler.scale(loss * (n_local / n) if world.active else loss).backward()
            step_losses[b] = loss.detach()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + (value.detach() if torch.is_tensor(value) else value) * n_local
        shown.append(n_local)
        all_reduce_gradients(s.model, world)
        s.scaler.step(s.optimizer)
        s.scaler.update()
        s.step += 1
        elapsed = time.perf_counter() - started
        if elapsed - read_at >= READ_EVERY_S or b + 1 == s.steps_per_epoch:
            loss_value, read_at = float(step_losses[b]), elapsed
            if not world.active:  # ranks read at different times; they check together below
                _check_finite(step_losses[:b + 1], first_step, s.epoch, s.run_dir, world)
        progress("step", epoch=s.epoch, step=b + 1, steps=s.steps_per_epoch, loss=loss_value,
                 examples_per_s=(b * recipe.batch_size + n) / max(elapsed, 1e-9))
    _check_finite(step_losses, first_step, s.epoch, s.run_dir, world)
    return EpochTotals(step_losses, shown, sums, time.perf_counter() - started)


def end_epoch(s: Session, totals: EpochTotals, progress: Progress) -> None:
    """Validate, write the epoch's metrics.jsonl line (with the hooks' figures), save best.pt and,
    at the recipe's cadence, last.pt."""
    world, device = s.world, s.device
    s.train_seconds += totals.seconds
    n_rows = s.train_rows.numel()
    # Weighted by the rows each step showed, summed over ranks, added up in float64 in step order.
    weighted = all_reduce_sum(totals.step_losses.double() * torch.tensor(totals.shown, dtype=torch.float64, device=device),
                              world)
    loss_sum = sum(weighted.tolist())
    sums = totals.sums
    if world.active:
        keys = sorted(sums)
        reduced = all_reduce_sum(torch.tensor([float(sums[key]) for key in keys], dtype=torch.float64, device=device),
                                 world).tolist()
        sums = dict(zip(keys, reduced))
    valid = (validation_elbo(s.model, s.valid_data, device, s.recipe.precision, objective=s.objective)
             if world.is_main else math.nan)
    rngs = gather_objects(rng_state(s.shuffle), world)
    s.epoch += 1
    if not world.is_main:
        return
    line = {"epoch": s.epoch, "step": s.step, "loss": loss_sum / n_rows,
            **{key: float(value) / n_rows for key, value in sums.items()},
            "valid_elbo": valid, "seconds": totals.seconds, "examples_per_s": n_rows / totals.seconds,
            "peak_memory_mb": peak_memory_mb(device)}
    for hook in s.hooks:
        line.update(hook.epoch_metrics(s))
    metrics_path = s.run_dir / "metrics.jsonl"
    try:
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
    except OSError as error:  # a full disk: name the file (a bare OSError from write() does not)
        raise file_fault(error, metrics_path) or error from None
    payload = {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(), "scaler": s.scaler.state_dict(),
               "rng": rngs[0], **({"rank_rng": rngs} if world.active else {}), "epoch": s.epoch, "step": s.step,
               "recipe": recipe_to_dict(s.recipe), "best_valid_elbo": max(s.best, valid),
               "train_seconds": s.train_seconds}
    if valid > s.best:
        s.best = valid
        save_checkpoint(s.run_dir / "best.pt", payload)
    # last.pt at the recipe's cadence; a resume replays the epochs after it exactly, from its RNG states.
    if _checkpoint_due(s.recipe, s.epoch, time.monotonic() - s.last_saved):
        save_checkpoint(s.run_dir / "last.pt", payload)
        s.last_saved = time.monotonic()
    for hook in s.hooks:
        hook.epoch_end(s, line)
    progress("epoch", **line)


def finish(s: Session) -> TrainResult:
    """The hooks' end of run (sample grids), then run.json marked finished."""
    result = TrainResult(s.run_dir, s.epoch, s.best, s.train_seconds, s.resumed)
    if not s.world.is_main:
        return result
    for hook in s.hooks:
        hook.finish(s)
    write_json(s.run_dir / "run.json", {**s.info, "status": "finished", "epochs_done": s.epoch,
                                        "best_valid_elbo": s.best, "train_seconds": s.train_seconds})
    return result
