"""The fair baselines of a weak-supervision study: did the unpaired data give a better representation?

The paired-only classifier (:mod:`~mvae_cli.evaluate.baseline`) asks whether the model predicts y
better than a classifier given the same pairs. Two more lines ask whether the unpaired rows gave the
model a better *code* (the "M1" comparison of semi-supervised learning), for each predicted y with
classes:

- ``paired_probe``: a linear probe (:mod:`~mvae_cli.evaluate.probe`) on the mean of the model's own
  q(z | x), fitted on the paired rows of the run's mask only (the rows that show both x and y) and
  scored on the same test examples as the model. Above the paired-only classifier: the model's code
  of x, learnt from every image, makes the few pairs go further.
- ``vae_probe``: the same probe on an image-only VAE (the model table's ``vae``: q(z | x) and
  p(x | z)) trained on every training x with the run's networks (latent size, width, image network,
  x's likelihood) and schedule (epochs, batch size, learning rate, β and its annealing, seed). It is
  what unpaired images give without any multimodal model: a multimodal model whose paired probe is
  not above it gained nothing from modelling y.

A binary y of D attributes gets a probe per attribute (two classes) and their mean; ``mean`` is the
mean over the predicted modalities, as the paired-only classifier's. The image-only VAE is a run
directory of its own beside the dataset file (``<dataset>.baselines.d/image-vae-<key>/``, loadable by
``mvae eval``), keyed by the dataset file and everything its training depends on, so the runs of one
seed share it and a killed evaluation resumes its training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mvae_cli.atomic import exclusive_lock
from mvae_cli.data.format import read_dataset
from mvae_cli.engine.loop import train
from mvae_cli.engine.run import load_trained, read_run_info
from mvae_cli.engine.stack import stack_key, stack_reason, train_stack
from mvae_cli.errors import UserError
from mvae_cli.evaluate.baseline import KINDS, paired_rows
from mvae_cli.evaluate.plan import resolve_modalities
from mvae_cli.evaluate.probe import linear_probes_accuracy
from mvae_cli.model.model import primary_modality
from mvae_cli.recipe import DataConfig, ModelConfig, Recipe, recipe_to_dict

# bump when the probe, the image-only VAE's recipe or its training change: a new VAE is trained
FAIR_VERSION = 1
BATCH = 1000  # rows encoded at a time


def targets(specs: Sequence, y: Sequence[str]) -> list:
    """The predicted modalities with classes (categorical, binary), in the order of ``y``."""
    by_name = {s.name: s for s in specs}
    return [by_name[name] for name in y if by_name[name].kind in KINDS]


def code_means(model, split, x: str, rows: torch.Tensor, names: Sequence[str] = ()) -> tuple[torch.Tensor, dict]:
    """The means of q(z | x) of ``split``'s ``rows`` (``[R, D]`` float64 on the host), encoded
    :data:`BATCH` rows at a time, and the values of the modalities ``names`` on those rows (on the
    host), read from the same batches."""
    shown = torch.tensor([m == x for m in model.names], device=split.device)
    means, values = [], {name: [] for name in names}
    with torch.inference_mode():
        for start in range(0, rows.numel(), BATCH):
            batch = split.batch(rows[start:start + BATCH])
            experts = model.encode(batch, shown.expand(batch[x].shape[0], -1))
            means.append(model.posterior(None, [x], experts=experts).mean.double().cpu())
            for name in names:
                values[name].append(batch[name].cpu())
    dim = int(getattr(model, "latent_dim", 0) or 0)
    return (torch.cat(means) if means else torch.zeros(0, dim, dtype=torch.float64),
            {name: torch.cat(parts) for name, parts in values.items()})


def probe_figures(specs: Sequence, train_codes: torch.Tensor, train_labels: dict[str, torch.Tensor],
                  test_codes: torch.Tensor, test_labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{y: test accuracy, "mean": …}`` of a linear probe per predicted modality ``y`` of ``specs``
    (those in ``train_labels``; a binary y of D attributes: the mean of D two-class probes)."""
    problems: dict[int, list] = {}  # classes -> [(name, train y, test y)]: the probes of one K fitted at once
    for spec in specs:
        if spec.name not in train_labels:
            continue
        train_y, test_y = train_labels[spec.name], test_labels[spec.name]
        if spec.kind == "categorical":
            problems.setdefault(spec.classes, []).append((spec.name, train_y.long().reshape(-1), test_y.long().reshape(-1)))
            continue
        train_y = (train_y.reshape(train_y.shape[0], -1) > 0.5).long()
        test_y = (test_y.reshape(test_y.shape[0], -1) > 0.5).long()
        problems.setdefault(2, []).extend((spec.name, train_y[:, a], test_y[:, a]) for a in range(train_y.shape[1]))
    scores: dict[str, list[float]] = {}
    for classes, group in problems.items():
        accuracies = linear_probes_accuracy(train_codes.expand(len(group), -1, -1), torch.stack([g[1] for g in group]),
                                            test_codes.expand(len(group), -1, -1), torch.stack([g[2] for g in group]),
                                            classes)
        for (name, _, _), accuracy in zip(group, accuracies):
            scores.setdefault(name, []).append(accuracy)
    out = {spec.name: sum(scores[spec.name]) / len(scores[spec.name]) for spec in specs if spec.name in scores}
    if out:
        out["mean"] = sum(out.values()) / len(out)
    return out


def pair_probe(model, specs: Sequence, x: str, y: Sequence[str], mask: np.ndarray, train, test,
               n_test: int) -> dict[str, float]:
    """A linear probe on the mean of ``model``'s q(z | x), fitted on the rows of ``mask`` that show x
    and y, per predicted y with classes (a y without such a row is left out).

    Args:
        specs: the dataset's modalities (``mask``'s columns follow them).
        mask: ``bool[N_train, M]``, the run's training mask.
        train, test: the splits (:class:`~mvae_cli.engine.data.SplitData`); the first ``n_test``
            test rows are scored.
    """
    names = [s.name for s in specs]
    wanted = targets(specs, y)
    test_codes, test_labels = code_means(model, test, x, torch.arange(n_test), [s.name for s in wanted])
    figures, by_rows = {}, {}
    for spec in wanted:  # the predicted modalities with the same paired rows share one encoding
        rows = paired_rows(mask, names.index(x), names.index(spec.name))
        if rows.size:
            by_rows.setdefault(rows.tobytes(), (rows, []))[1].append(spec)
    for rows, group in by_rows.values():
        codes, train_labels = code_means(model, train, x, torch.from_numpy(rows), [s.name for s in group])
        figures.update(probe_figures(group, codes, train_labels, test_codes, test_labels))
    figures.pop("mean", None)
    ordered = {s.name: figures[s.name] for s in wanted if s.name in figures}
    if ordered:
        ordered["mean"] = sum(ordered.values()) / len(ordered)
    return ordered


def image_vae_recipe(recipe: Recipe, dataset_path: str | Path, x: str, device: str) -> Recipe:
    """The recipe of the image-only VAE beside ``recipe``'s run: the ``vae`` of x alone with the run's
    networks and schedule, on every training row (supervision 1: the VAE reads x only), on ``device``."""
    m = recipe.model
    likelihoods = {x: m.likelihoods[x]} if x in m.likelihoods else {}
    data = DataConfig(dataset=recipe.data.dataset, path=str(Path(dataset_path).resolve()),
                      binarize=recipe.data.binarize)
    return Recipe(data=data, model=ModelConfig(name="vae", latent_dim=m.latent_dim, hidden=m.hidden,
                                               image_net=m.image_net, likelihoods=likelihoods),
                  supervision=1.0, seed=recipe.seed, epochs=recipe.epochs, batch_size=recipe.batch_size,
                  lr=recipe.lr, anneal_epochs=recipe.anneal_epochs, beta=recipe.beta, device=device,
                  precision="fp32")


def image_vae_dir(recipe: Recipe) -> Path:
    """Where the image-only VAE of ``recipe`` (:func:`image_vae_recipe`) is kept: beside its dataset
    file, named by a key of the file (size, modification time) and everything its training reads."""
    path = Path(recipe.data.path)
    stat = path.stat()
    what = recipe_to_dict(dataclasses.replace(recipe, device="auto"))  # the device does not change the figures
    key = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "version": FAIR_VERSION, "recipe": what},
                     sort_keys=True)
    return path.with_name(path.name + ".baselines.d") / f"image-vae-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _trained(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run with its best.pt (no run there yet, or a damaged
    run.json: not trained, so trained or resumed)."""
    try:
        return read_run_info(folder).get("status") == "finished" and (folder / "best.pt").is_file()
    except Exception:  # noqa: BLE001
        return False


@contextlib.contextmanager
def _random_state_kept(device: torch.device):
    """The block (the engine's training, which seeds Python, numpy and torch) leaves every global
    random state as it found it, so an evaluation's figures do not depend on whether it trained the VAE."""
    kept = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            random.setstate(kept[0])
            np.random.set_state(kept[1])


def image_vae(recipe: Recipe, device: torch.device, stage: Callable[[str], None] | None = None):
    """The image-only VAE of ``recipe`` (:func:`image_vae_recipe`), in eval mode on ``device``: loaded
    from :func:`image_vae_dir` when trained before, else trained there first (resumed where an
    earlier evaluation was stopped). Evaluations side by side wait for each other, so one trains it.
    Where the dataset's folder cannot be written, it is trained in a temporary folder and not kept.

    Args:
        stage: ``stage(description)`` once per training epoch.
    """

    run_dir = image_vae_dir(recipe)
    report = stage or (lambda description: None)

    def progress(event: str, **info) -> None:
        if event == "start" and info.get("start_epoch", 0) < recipe.epochs:
            report(f"image-only VAE for the fair baselines: training {recipe.epochs} epochs in {run_dir}")
        elif event == "epoch":
            report(f"image-only VAE: epoch {info.get('epoch')}/{recipe.epochs}, valid ELBO "
                   f"{info.get('valid_elbo', float('nan')):.1f}")

    with _random_state_kept(device):  # building a model draws its initial weights too
        try:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            with tempfile.TemporaryDirectory(prefix="mvae-image-vae-") as folder:
                train(recipe, Path(folder) / "run", progress)
                return load_trained(Path(folder) / "run", "best", device)[2]
        with exclusive_lock(run_dir):
            if not _trained(run_dir):
                train(recipe, run_dir, progress)
        return load_trained(run_dir, "best", device)[2]


def image_vaes_for(recipes: Sequence[Recipe]) -> list[Recipe]:
    """The image-only VAEs the evaluations of ``recipes`` (a study's points) will need and that are not
    trained yet, once each: for each recipe that evaluates its baselines, on a dataset with x its
    primary modality and a predicted y with classes. A dataset file that does not exist (yet) or does
    not open is left to the evaluation, which says what is wrong."""

    found: dict[Path, Recipe] = {}
    for recipe in recipes:
        if not recipe.eval.baseline:
            continue
        path = recipe.data.resolved_path()
        try:
            with read_dataset(path) as dataset:
                specs, splits = dataset.specs, set(dataset.sizes)
        except Exception:  # noqa: BLE001 -- the evaluation reports it
            continue
        try:
            x, y = resolve_modalities(specs, recipe.eval.x, recipe.eval.y)  # as the evaluation resolves them
        except UserError:
            continue
        if x != primary_modality(specs) or "train" not in splits or not targets(specs, y):
            continue
        vae = image_vae_recipe(recipe, path, x, recipe.device)
        folder = image_vae_dir(vae)
        if not _trained(folder):
            found.setdefault(folder, vae)
    return list(found.values())


def train_image_vaes(recipes: Sequence[Recipe], note: Callable[[str], None] | None = None) -> None:
    """Train the image-only VAEs ``recipes`` (:func:`image_vaes_for`) before a study's evaluations
    need them: those that share networks and schedule (they differ in seed) as one stack
    (:func:`~mvae_cli.engine.stack.train_stack`), each in its own folder, so the evaluations load
    them. A VAE that fails here is left to the evaluation, which trains it alone or says why.

    Args:
        note: ``note(text)``: a line as each group starts and at each of its epochs.
    """

    say = note or (lambda text: None)
    groups: dict[str, list[Recipe]] = {}
    for recipe in recipes:
        groups.setdefault(stack_key(recipe) if stack_reason(recipe) is None else repr(id(recipe)), []).append(recipe)
    for group in groups.values():
        folders = [image_vae_dir(r) for r in group]
        seeds = ", ".join(str(r.seed) for r in group)
        say(f"training {len(group)} image-only VAE{'s' if len(group) > 1 else ''} (seed {seeds}) for the fair "
            f"baselines{' together' if len(group) > 1 else ''}, {group[0].epochs} epochs")
        epochs = group[0].epochs

        def progress(event: str, *, first: bool, **info) -> None:
            if event == "epoch" and first:
                say(f"image-only VAEs: epoch {info.get('epoch')}/{epochs}")

        with contextlib.ExitStack() as locks, _random_state_kept(torch.device("cpu")):
            try:
                for folder in folders:
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    locks.enter_context(exclusive_lock(folder))
            except OSError:
                continue  # a folder that cannot be written: each evaluation trains its own
            reports = [lambda event, first=(i == 0), **info: progress(event, first=first, **info)
                       for i in range(len(group))]
            if len(group) > 1:
                train_stack(group, folders, reports)
            else:
                try:
                    train(group[0], folders[0], reports[0])
                except Exception:  # noqa: BLE001 -- the evaluation trains it again and reports the error
                    pass
