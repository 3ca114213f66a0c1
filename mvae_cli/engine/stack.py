"""Many runs of one architecture trained together, as one stacked model (:mod:`mvae_cli.model.stack`).

The runs of a study that differ only in their seed, their mask (supervision or keep-prob level)
and β share every shape of their networks. :func:`train_stack` opens each run exactly as
:func:`~mvae_cli.engine.loop.train` does (its own run directory, mask, seeds, data order,
checkpoints and hooks), then takes one optimiser step of every run at once: the runs' batches one
after another in one batch, each run's host plan and noise from its own streams
(:mod:`mvae_cli.model.rows`), one forward and backward pass of the stacked networks, one fused
Adam step over the stacked parameters. A run's epoch ends on its own: its weights and optimiser
state are copied back into its own model, its streams installed, and the single-run
:func:`~mvae_cli.engine.loop.end_epoch` validates it and writes its ``metrics.jsonl`` line and
checkpoints. So every file of a run is what training it alone writes, ``mvae eval`` and
``--resume`` read it alone, and a run resumed alone or in a stack continues the same streams.

A run whose loss stops being finite stops alone (its failure is its result); the others go on.
The runs of one stack share their optimiser step and their steps per epoch, so they write their
checkpoints at the same steps and a killed stack resumes as the same stack, bit for bit. Runs with
other epoch lengths (keep-prob levels show different numbers of rows) train as separate stacks, one
after the other; so do runs resumed at different steps (a kill between two runs' checkpoint
writes), which then continue within rounding of the uninterrupted run rather than bit for bit (a
batched product's last bits can depend on the other runs' row counts). :func:`stack_reason` says
why a recipe does not stack.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mvae_cli import zoo
from mvae_cli.engine.data import dynamic_binarize, shared_splits
from mvae_cli.engine.device import autocast
from mvae_cli.engine.hooks import Hooks
from mvae_cli.engine.loop import (READ_EVERY_S, EpochTotals, Progress, Session, TrainingDiverged, TrainResult,
                                  _check_finite, announce, close_run, end_epoch, epoch_order, finish, open_run)
from mvae_cli.model.rows import stack_batches, with_host_mask
from mvae_cli.model.stack import stack_models, stack_reason as model_stack_reason, stacked_parameters, unstack_into
from mvae_cli.objectives.regularize import beta_at
from mvae_cli.recipe import Recipe, recipe_to_dict

# What may differ between the runs of one stack: what they are trained on, and β.
STACK_FREE = ("seed", "supervision", "keep_prob", "beta", "epochs", "paired_repeat", "paired_share", "eval", "grid",
              "checkpoint_every", "checkpoint_minutes", "trackers", "slurm", "jobs")


def stack_key(recipe: Recipe) -> str:
    """Recipes with equal keys have one architecture and one optimiser: they can train as one stack."""
    raw = recipe_to_dict(recipe)
    for key in STACK_FREE:
        raw.pop(key, None)
    data = dict(raw.get("data", {}))
    for key in ("supervision", "keep_prob", "mask", "mask_seed"):
        data.pop(key, None)
    raw["data"] = data
    return repr(sorted(raw.items(), key=lambda item: item[0]))


def stack_reason(recipe: Recipe, model=None) -> str | None:
    """Why runs of ``recipe`` train one by one rather than stacked (None when they stack)."""
    objective = zoo.entry(recipe.model.name).objective
    if not getattr(objective, "stacks", False):
        return f"the {recipe.model.name} objective does not stack yet"
    if recipe.free_bits > 0:
        return "free bits floor the KL of a batch's average"
    if recipe.nproc > 1:
        return "data parallel runs (nproc > 1) train one by one"
    if recipe.precision == "fp16":
        return "fp16's loss scaling is per run"
    if model is not None:
        return model_stack_reason(model)
    return None


@dataclass
class _Member:
    """One run of a stack: its session, its noise streams, and the epoch in progress."""

    session: Session
    progress: Progress
    torch_gen: torch.Generator
    numpy_rng: np.random.RandomState
    python_state: object
    order: torch.Tensor | None = None
    b: int = 0
    shown: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)
    started: float = 0.0
    first_step: int = 0
    read_at: float = -math.inf
    loss_value: float = math.nan


def _capture_streams(device: torch.device):
    """The process's streams now (the state a run alone would draw its noise from), as generators."""
    gen = torch.Generator(device)
    gen.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    numpy_rng = np.random.RandomState()
    numpy_rng.set_state(np.random.get_state())
    return gen, numpy_rng, random.getstate()


def _install_streams(m: _Member) -> None:
    """Make the member's streams the process's (validation, checkpoints read them there)."""
    if m.session.device.type == "cuda":
        torch.cuda.set_rng_state(m.torch_gen.get_state(), m.session.device)
    else:
        torch.set_rng_state(m.torch_gen.get_state())
    np.random.set_state(m.numpy_rng.get_state())
    random.setstate(m.python_state)


def _take_streams(m: _Member) -> None:
    m.torch_gen, m.numpy_rng, m.python_state = _capture_streams(m.session.device)


def train_stack(recipes: list[Recipe], run_dirs: list[str | Path], progress: list[Progress | None] | None = None,
                hooks: list[Hooks] | None = None) -> list[TrainResult | BaseException]:
    """Train (or resume) the runs ``run_dirs`` of ``recipes`` (equal :func:`stack_key`) together.

    Args:
        progress: one ``progress(event, **info)`` per run, as :func:`~mvae_cli.engine.loop.train` calls it.
        hooks: one list of hooks per run.

    Returns:
        Per run, its :class:`~mvae_cli.engine.loop.TrainResult`, or the exception that ended it
        (a :class:`~mvae_cli.errors.UserError` such as divergence, or a bug); one run's failure does
        not stop the others.
    """
    n = len(recipes)
    progress = [p or (lambda event, **info: None) for p in (progress or [None] * n)]
    hooks = hooks or [()] * n
    if len({stack_key(r) for r in recipes}) > 1:
        raise ValueError("the runs of a stack must share their architecture and optimiser (stack_key)")
    results: list = [None] * n
    members: dict[int, _Member] = {}
    try:
        with shared_splits():  # the runs' dataset read once, held once
            for i, (recipe, run_dir) in enumerate(zip(recipes, run_dirs)):
                try:
                    session = open_run(recipe, Path(run_dir), hooks[i])
                except Exception as error:  # noqa: BLE001 -- this run's failure is its result
                    results[i] = error
                    continue
                members[i] = _Member(session, progress[i], *_capture_streams(session.device))
                why = stack_reason(recipe, session.model)
                if why is not None:
                    raise ValueError(f"{run_dir} does not stack: {why}")
                announce(session, progress[i])
        for i, m in list(members.items()):
            if m.session.epoch >= m.session.recipe.epochs:
                results[i] = _finish(m, "finished")
        # One stack per (optimiser step, steps per epoch): its runs write their checkpoints at the same
        # steps, so a killed stack resumes as the same stack, bit for bit.
        by_step: dict[tuple[int, int], list[int]] = {}
        for i, m in members.items():
            if results[i] is None:
                by_step.setdefault((m.session.step, m.session.steps_per_epoch), []).append(i)
        for group in by_step.values():
            _train_group({i: members[i] for i in group}, results)
    finally:  # interrupted (Ctrl-C, a kill's signal): every run still open is closed as failed
        for i, m in members.items():
            if results[i] is None:
                close_run(m.session, "failed")
    return results


def _finish(m: _Member, status: str, error: BaseException | None = None):
    try:
        result = finish(m.session) if status == "finished" else error
    finally:
        close_run(m.session, status)
    return result


_MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's per-element state (the step count is shared by a stack)


class _Stack:
    """The stacked model and optimiser of some members, built from their own models and Adam states."""

    def __init__(self, members: list[_Member]):
        sessions = [m.session for m in members]
        self.members = members
        models = [s.model for s in sessions]
        self.model = stack_models(models).to(sessions[0].device)
        self.model.train()
        self.shares = stacked_parameters(self.model)
        params = list({id(share.stacked): share.stacked for share in self.shares}.values())
        if {id(p) for p in params} != {id(p) for p in self.model.parameters()}:
            raise ValueError("a stacked parameter has no runs' parameters to carry its state")
        self.optimizer = torch.optim.Adam(params, lr=sessions[0].recipe.lr, fused=True)
        for p in params:
            held = [(share, r, s.model.get_parameter(share.name), s.optimizer)
                    for share in self.shares if share.stacked is p for r, s in enumerate(sessions)]
            states = [optimizer.state.get(own) for _, _, own, optimizer in held]
            if all(states):
                state = {"step": states[0]["step"].clone()}
                for key in _MOMENTS:  # what a grouped parameter pads with stays 0 (its gradients are 0)
                    state[key] = torch.zeros_like(p)
                    for (share, r, own, _), st in zip(held, states):
                        share.part(state[key], r, own).copy_(st[key])
                self.optimizer.state[p] = state

    def copy_out(self, r: int) -> None:
        """Member ``r``'s weights and Adam state back into its own model and optimiser."""
        s = self.members[r].session
        unstack_into(self.model, r, s.model)
        for share in self.shares:
            state = self.optimizer.state.get(share.stacked)
            if state:
                own = s.model.get_parameter(share.name)
                s.optimizer.state[own] = {"step": state["step"].clone(),
                                          **{key: share.part(state[key], r, own).contiguous() for key in _MOMENTS}}


class _Tally:
    """The epoch in progress of the active members, a column each: the step losses ``[steps, n]``
    and the metric sums ``{key: [n]}`` (each step's value times its rows, added in step order, as
    one run alone adds them): one update a step and metric, not one per run."""

    def __init__(self, losses: torch.Tensor, sums: dict):
        self.losses, self.sums = losses, sums

    @classmethod
    def empty(cls, steps: int, n: int, device) -> "_Tally":
        return cls(torch.zeros(steps, n, device=device), {})

    def add(self, b: int, losses: torch.Tensor, terms: dict, rows: torch.Tensor) -> None:
        self.losses[b] = losses
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach() * rows

    def keep(self, columns: list[int]) -> "_Tally":
        at = torch.tensor(columns, dtype=torch.long, device=self.losses.device)
        return _Tally(self.losses.index_select(1, at), {k: v.index_select(0, at) for k, v in self.sums.items()})

    def of(self, r: int) -> tuple[torch.Tensor, dict]:
        """Member ``r``'s step losses and sums (views)."""
        return self.losses[:, r], {key: value[r] for key, value in self.sums.items()}


def _train_group(members: dict[int, _Member], results: list) -> None:
    """Step every member at once until each has its epochs (or has failed)."""
    active = list(members)
    stack = _Stack([members[i] for i in active])
    objective = members[active[0]].session.objective
    tally = None
    while active:
        changed = False
        batches, betas = [], []
        for r, i in enumerate(active):
            m = members[i]
            s = m.session
            if m.b == 0:  # the members of a group start their epochs together (they share their steps)
                if r == 0:
                    tally = _Tally.empty(s.steps_per_epoch, len(active), s.device)
                m.order = epoch_order(s)
                m.shown, m.sums, m.started, m.first_step, m.read_at = [], {}, time.perf_counter(), s.step, -math.inf
                m.loss_value = math.nan
            index = m.order[m.b * s.recipe.batch_size:(m.b + 1) * s.recipe.batch_size]
            batch = with_host_mask(s.train_data.batch(index), s.mask[index.numpy()])
            if s.binarized:
                batch = dynamic_binarize(batch, s.binarized, s.recipe.seed, s.step)
            batches.append(batch)
            betas.append(beta_at(s.step, s.objective.anneal_steps, s.objective.beta_target))
        sizes = [b["mask"].shape[0] for b in batches]
        device = members[active[0]].session.device
        beta = betas[0] if len(set(betas)) == 1 else torch.tensor(
            np.repeat(betas, sizes), dtype=torch.float32, device=device)
        batch = stack_batches(batches, [(members[i].torch_gen, members[i].numpy_rng) for i in active])
        stack.optimizer.zero_grad(set_to_none=True)
        with autocast(device, members[active[0]].session.recipe.precision):
            losses, terms = objective.loss(stack.model, batch, beta)
        if losses.requires_grad:  # (no run's batch held a row its objective uses: nothing to learn)
            losses.sum().backward()
        stack.optimizer.step()
        tally.add(members[active[0]].b, losses.detach(), terms, torch.tensor(sizes, dtype=torch.float32, device=device))
        ended = []
        for r, i in enumerate(active):
            m, s = members[i], members[i].session
            n = sizes[r]
            m.sums["beta"] = m.sums.get("beta", 0.0) + betas[r] * n
            m.shown.append(n)
            s.step += 1
            m.b += 1
            elapsed = time.perf_counter() - m.started
            last = m.b == s.steps_per_epoch
            if elapsed - m.read_at >= READ_EVERY_S or last:  # each read waits for the device
                m.read_at, m.loss_value = elapsed, float(tally.losses[m.b - 1, r])
                if not math.isfinite(m.loss_value) or last:
                    ended.append(r)
            m.progress("step", epoch=s.epoch, step=m.b, steps=s.steps_per_epoch, loss=m.loss_value,
                       examples_per_s=sum(m.shown) / max(elapsed, 1e-9))
        for r in ended:
            i = active[r]
            m, s = members[i], members[i].session
            stack.copy_out(r)
            step_losses, sums = tally.of(r)
            try:
                _check_finite(step_losses[:m.b], m.first_step, s.epoch, s.run_dir, s.world)
                _install_streams(m)
                totals = EpochTotals(step_losses, m.shown, {**m.sums, **sums}, time.perf_counter() - m.started)
                end_epoch(s, totals, m.progress)
                _take_streams(m)
                m.b = 0
                if s.epoch >= s.recipe.epochs:
                    results[i] = _finish(m, "finished")
                    changed = True
            except TrainingDiverged as error:
                results[i] = _finish(m, "failed", error)
                changed = True
            except Exception as error:  # noqa: BLE001 -- a fault of one run (a full disk) ends that run alone
                results[i] = _finish(m, "failed", error)
                changed = True
        if changed:
            for r, i in enumerate(active):
                if results[i] is None:
                    stack.copy_out(r)
            tally = tally.keep([r for r, i in enumerate(active) if results[i] is None])
            active = [i for i in active if results[i] is None]
            if active:
                stack = _Stack([members[i] for i in active])
