"""Training the paired-only classifiers of :mod:`~mvae_cli.evaluate.baseline`, one alone or several at once.

A classifier (:class:`PairedClassifier`: the model's x encoder, a linear head) is trained with
Adam on the paired rows, validated every round and early-stopped (:func:`train_paired_classifier`).
The classifiers of a study's attributes often learn from the same rows (a mask that pairs x with
every y at once): with the same seed they draw the same batches, so
:func:`train_paired_classifiers` trains them as one stack — the first layers' weights side by side
in one product with the shared x, the later layers as batched products — each with its own best
state and patience, and a classifier that stops is taken out of the stack, so each ends as it
would alone (:func:`train_paired_classifier`, which stays as the reference).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mvae_cli.model.nets import build_encoder

ROUND_EXAMPLES = 1000  # examples between validations (at least one epoch of the paired rows)
PATIENCE = 5  # validations without improvement before stopping
MAX_ROUNDS = 100
MAX_STEPS = 20_000  # bounds the cost on large paired sets (≈ 40 epochs of MNIST's 50,000)
BATCH_SIZE = 100
LR = 1e-3
VALID_CHUNK = 500  # valid rows scored at once

Batches = Callable[[torch.Tensor], dict]  # rows long[B] -> {name: model input [B, ...]}
Progress = Callable[[int, int], None]  # (rounds done, most rounds)


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


def _tally(hits: torch.Tensor) -> float:
    """Right answers in a chunk: examples (categorical) or each example's share of attributes (binary)."""
    hits = hits.double()
    return float(hits.mean(dim=1).sum()) if hits.dim() > 1 else float(hits.sum())


def accuracy(model: PairedClassifier, batches: Batches, n: int, x: str, y: str, device) -> float:
    """The share of the first ``n`` rows of ``batches`` that ``model`` predicts right (left in train mode)."""
    model.eval()
    right, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, n, VALID_CHUNK):
            batch = batches(torch.arange(start, min(start + VALID_CHUNK, n), device=device))
            hits = model.right(model(batch[x]), batch[y])
            right += _tally(hits)
            count += hits.shape[0]
    model.train()
    return right / max(1, count)


def _new_classifier(x_spec, y_spec, latent_dim: int, hidden: int, image_net: str, seed: int, device):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PairedClassifier(x_spec, y_spec, latent_dim, hidden, image_net).to(device)


def _steps_per_round(n_rows: int) -> int:
    return max(math.ceil(n_rows / BATCH_SIZE), ROUND_EXAMPLES // BATCH_SIZE)


def most_rounds(n_rows: int) -> int:
    """The most validation rounds a classifier trained on ``n_rows`` paired rows takes."""
    return min(MAX_ROUNDS, max(1, MAX_STEPS // _steps_per_round(n_rows)))


def _rounds(rows: torch.Tensor) -> tuple[int, int]:
    """(steps per round, most rounds) for the paired ``rows``."""
    return _steps_per_round(rows.numel()), most_rounds(rows.numel())


def _row_batches(rows: torch.Tensor, shuffle: torch.Generator):
    """Batches of ``BATCH_SIZE`` of ``rows``, through one fresh shuffle after another (the last of a
    shuffle may be shorter)."""
    order, used = rows[torch.randperm(rows.numel(), generator=shuffle)], 0
    while True:
        if used >= order.numel():
            order, used = rows[torch.randperm(rows.numel(), generator=shuffle)], 0
        index = order[used:used + BATCH_SIZE]
        used += index.numel()
        yield index


def train_paired_classifier(x_spec, y_spec, train: Batches, rows: np.ndarray, valid: Batches, n_valid: int, *,
                            latent_dim: int, hidden: int, image_net: str, seed: int, device) -> PairedClassifier:
    """Train the baseline on ``rows`` of the training split only, keeping the best valid accuracy.

    Args:
        x_spec, y_spec: the input and predicted modalities.
        train: ``train(rows long[B]) -> batch`` of the training split.
        rows: the training rows to learn from (:func:`~mvae_cli.evaluate.baseline.paired_rows`); no other row is read.
        valid: the same for the valid split, scored on its first ``n_valid`` rows.
        latent_dim, hidden, image_net: the model's settings (the encoder is built as the model's).
        seed: seeds initialisation and shuffling (the global RNG is left as it was).

    Returns:
        The classifier at its best validation round, in eval mode.
    """
    model = _new_classifier(x_spec, y_spec, latent_dim, hidden, image_net, seed, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    rows = torch.from_numpy(np.array(rows, dtype=np.int64))  # a copy: the rows may be read-only
    x, y = x_spec.name, y_spec.name
    shuffle = torch.Generator().manual_seed(seed)
    best, best_state, waited = -1.0, None, 0
    steps_per_round, most = _rounds(rows)
    batches = _row_batches(rows, shuffle)
    model.train()
    for _ in range(most):
        for _ in range(steps_per_round):
            batch = train(next(batches))
            loss = model.loss(model(batch[x]), batch[y])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = accuracy(model, valid, n_valid, x, y, device)
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


def _mlp_layers(model: PairedClassifier) -> list[nn.Linear] | None:
    """The linear layers of an encoder that is Flatten, then Linear layers with SiLU between (no
    normalisation): the encoders :func:`train_paired_classifiers` stacks; None for any other."""
    net = getattr(model.encoder, "net", None)
    if not isinstance(net, nn.Sequential) or not isinstance(net[0], nn.Flatten):
        return None
    layers, pending = [], False  # pending: a Linear waiting for its SiLU
    for module in list(net)[1:]:
        if isinstance(module, nn.Linear) and not pending:
            layers.append(module)
            pending = True
        elif isinstance(module, nn.SiLU) and pending:
            pending = False
        elif not isinstance(module, nn.Identity):
            return None
    return layers if pending and len(layers) >= 2 else None


class _Stack:
    """The active classifiers of :func:`train_paired_classifiers` as stacked tensors and one Adam.

    ``layers[i]`` are the i-th encoder layer's ``(weight [K, out, in], bias [K, out])``; ``heads[k]``
    classifier k's own head; ``members[k]`` its index among all the classifiers.
    """

    def __init__(self, models: Sequence[PairedClassifier]):
        self.members = list(range(len(models)))
        per_model = [_mlp_layers(m) for m in models]
        self.layers = [tuple(torch.stack([getattr(layers[i], name).detach() for layers in per_model]).requires_grad_()
                             for name in ("weight", "bias")) for i in range(len(per_model[0]))]
        self.heads = [tuple(p.detach().clone().requires_grad_() for p in (m.head.weight, m.head.bias)) for m in models]
        self.optimizer = torch.optim.Adam(self.parameters(), lr=LR)

    def parameters(self) -> list[torch.Tensor]:
        return [p for pair in self.layers for p in pair] + [p for pair in self.heads for p in pair]

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor], groups: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Every active classifier's logits for the shared input ``x [B, ...]``; or, with ``groups``
        (the group of each active classifier, the classifiers of a group one after another), for
        ``x[g]`` ``[B, ...]`` the batch of the g-th group among them: each group's first layers as one
        product with its own batch."""
        (weight, bias), rest = self.layers[0], self.layers[1:]
        width = weight.shape[1]
        x, sizes = ([x], [weight.shape[0]]) if groups is None else (x, [len(list(r)) for _, r in itertools.groupby(groups)])
        if len(sizes) != len(x):
            raise ValueError(f"{len(x)} batches for {len(sizes)} groups of classifiers")
        parts, start = [], 0
        for batch, n in zip(x, sizes):
            h = nn.functional.linear(batch.flatten(1), weight[start:start + n].reshape(n * width, -1),
                                     bias[start:start + n].reshape(n * width))
            parts.append(h.view(batch.shape[0], n, width).transpose(0, 1))  # [n, B, width]
            start += n
        h = parts[0] if len(parts) == 1 else torch.cat(parts)  # [K, B, width]
        for weight, bias in rest:
            h = torch.baddbmm(bias.unsqueeze(1), nn.functional.silu(h), weight.transpose(1, 2))
        return [nn.functional.linear(code, *head) for code, head in zip(h.unbind(0), self.heads)]

    def state(self, j: int, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of the j-th active classifier (a copy)."""
        values = [p[j] for pair in self.layers for p in pair] + list(self.heads[j])
        return {name: v.detach().clone() for name, v in zip(names, values)}

    def keep(self, kept: Sequence[int]) -> None:
        """Only the active classifiers at positions ``kept`` stay, their Adam moments and step with them."""
        old = self.optimizer.state
        index = torch.tensor(kept, dtype=torch.long, device=self.layers[0][0].device)
        moved, layers = [], []
        for pair in self.layers:
            new_pair = tuple(p.detach()[index].clone().requires_grad_() for p in pair)
            moved += [(p, q, index) for p, q in zip(pair, new_pair)]
            layers.append(new_pair)
        heads = [self.heads[j] for j in kept]
        self.layers, self.heads, self.members = layers, heads, [self.members[j] for j in kept]
        self.optimizer = torch.optim.Adam(self.parameters(), lr=LR)
        for p, q, rows in moved:
            if old.get(p):
                self.optimizer.state[q] = {key: (v if key == "step" else v[rows]).clone() for key, v in old[p].items()}
        for pair in heads:
            for p in pair:
                if old.get(p):
                    self.optimizer.state[p] = old[p]


def train_paired_classifiers(x_spec, y_specs: Sequence, train: Batches, rows: np.ndarray, valid: Batches,
                             n_valid: int, *, latent_dim: int, hidden: int, image_net: str, seed: int, device,
                             progress: Progress | None = None) -> list[PairedClassifier]:
    """:func:`train_paired_classifier` for every modality of ``y_specs`` on the same ``rows``, at once.

    With the same seed and rows every classifier draws the same batches, so the first layers run as
    one product with the shared x (:class:`_Stack`); each keeps its own best state and patience and
    leaves the stack when it stops. An encoder that is not a plain MLP (convolutions, batch
    normalisation) is trained one classifier at a time instead.

    Args:
        x_spec: the input modality; y_specs: the predicted ones.
        progress: ``progress(done, total)`` after each validation round (``total``: the most rounds).
        Others: as :func:`train_paired_classifier`.

    Returns:
        The classifiers at their best validation rounds, in eval mode, in the order of ``y_specs``.
    """
    return train_classifier_groups(x_spec, [(list(y_specs), rows, seed)], train, valid, n_valid,
                                   latent_dim=latent_dim, hidden=hidden, image_net=image_net, device=device,
                                   progress=progress)[0]


def train_classifier_groups(x_spec, groups: Sequence[tuple[Sequence, np.ndarray, int]], train: Batches,
                            valid: Batches, n_valid: int, *, latent_dim: int, hidden: int, image_net: str, device,
                            progress: Progress | None = None) -> list[list[PairedClassifier]]:
    """The classifiers of several groups trained as one stack: a group is ``(y_specs, rows, seed)``, the
    classifiers of one run's paired rows (:func:`train_paired_classifiers`), and every group has as many
    rows (the runs of one supervision level), so each draws its own batches from its own rows and
    shuffle, one step of all at a time. While classifiers of more than one group are active, each
    one's first layer is a batched product with its own group's x; with one group left, the shared
    product of :func:`train_paired_classifiers`. Each classifier ends as it would alone up to the last
    bits of its weights.

    Returns:
        Per group, its classifiers at their best validation rounds, in eval mode, in the order of its y_specs.

    Raises:
        ValueError: groups with different numbers of rows.
    """
    settings = dict(latent_dim=latent_dim, hidden=hidden, image_net=image_net, device=device)
    sizes = {len(rows) for _, rows, _ in groups}
    if len(sizes) > 1:
        raise ValueError(f"the groups of one stack need as many rows each, not {sorted(sizes)}")
    models, owner = [], []
    for g, (y_specs, _, seed) in enumerate(groups):
        models += [_new_classifier(x_spec, y, latent_dim, hidden, image_net, seed, device) for y in y_specs]
        owner += [g] * len(y_specs)
    row_sets = [torch.from_numpy(np.array(rows, dtype=np.int64)) for _, rows, _ in groups]  # copies: may be read-only
    if not models:
        return [[] for _ in groups]
    steps_per_round, most = _rounds(row_sets[0])
    if _mlp_layers(models[0]) is None:
        out = []
        for g, (y_specs, rows, seed) in enumerate(groups):
            out.append([train_paired_classifier(x_spec, y, train, rows, valid, n_valid, seed=seed, **settings)
                        for y in y_specs])
            if progress is not None:
                progress(g + 1, len(groups))
        return out
    y_of = [y for y_specs, _, _ in groups for y in y_specs]
    names = [name for name, _ in models[0].named_parameters()]
    stack, x = _Stack(models), x_spec.name
    best, best_state, waited = [-1.0] * len(models), [None] * len(models), [0] * len(models)
    batches = [_row_batches(rows, torch.Generator().manual_seed(seed)) for rows, (_, _, seed) in zip(row_sets, groups)]
    for done in range(most):
        for _ in range(steps_per_round):
            active = sorted({owner[k] for k in stack.members})
            drawn = {g: train(next(batches[g])) for g in active}
            if len(active) == 1:
                logits = stack.forward(drawn[active[0]][x])
            else:  # each group's first layers one product with its own batch
                logits = stack.forward([drawn[g][x] for g in active], [owner[k] for k in stack.members])
            loss = sum(models[k].loss(out, drawn[owner[k]][y_of[k].name]) for k, out in zip(stack.members, logits))
            stack.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stack.optimizer.step()
        kept = []
        for j, score in enumerate(_stack_accuracy(stack, models, y_of, valid, n_valid, x, device)):
            k = stack.members[j]
            if score > best[k]:
                best[k], waited[k], best_state[k] = score, 0, stack.state(j, names)
                kept.append(j)
            else:
                waited[k] += 1
                if waited[k] < PATIENCE:
                    kept.append(j)
        if progress is not None:
            progress(done + 1 if kept else most, most)
        if not kept:
            break
        if len(kept) < len(stack.members):
            stack.keep(kept)
    for model, state in zip(models, best_state):
        model.load_state_dict(state)
        model.eval()
    out, at = [], 0
    for y_specs, _, _ in groups:
        out.append(models[at:at + len(y_specs)])
        at += len(y_specs)
    return out


def _stack_accuracy(stack: _Stack, models, y_specs, batches: Batches, n: int, x: str, device) -> list[float]:
    """:func:`accuracy` of every active classifier of ``stack`` on the first ``n`` rows of ``batches``."""
    right, count = [0.0] * len(stack.members), 0
    with torch.inference_mode():
        for start in range(0, n, VALID_CHUNK):
            batch = batches(torch.arange(start, min(start + VALID_CHUNK, n), device=device))
            for j, (k, logits) in enumerate(zip(stack.members, stack.forward(batch[x]))):
                right[j] += _tally(models[k].right(logits, batch[y_specs[k].name]))
            count += batch[x].shape[0]
    return [r / max(1, count) for r in right]
