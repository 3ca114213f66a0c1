"""N models of one architecture as one: every parameter with a leading run dimension.

The runs of a study that differ only in what they are trained on (seed, supervision level, mask)
share their architecture. :func:`stack_models` builds one model whose networks hold the N runs'
weights side by side (``[N, in, out]``, :class:`StackedLinear`) and compute every run's rows in one
batched product, so a step of N runs costs one step's operations, not N. Everything without parameters (the fusion of
experts, the likelihoods, the objectives) is the single model's own code, run on the stacked
batch (:mod:`mvae_cli.model.rows`: the examples of run r are one block of it).

A stacked network is told which run each of its input rows belongs to
(:func:`~mvae_cli.model.rows.computing`); it places them in a padded ``[N, C, ...]`` block (C the
most rows any run has; padding rows are zeros and their outputs are dropped, so they carry no
gradient; runs whose counts differ much are padded in blocks of their own, :func:`_segments`, each
run through the whole network), and returns the rows in their order. The gradient of each run's
weights comes from its own rows only: a run of a stack computes what it computes alone, up to the
rounding of the batched products.

What stacks: networks of linear layers, embeddings and parameter-free layers (MLP encoders and
decoders, the categorical encoder). What does not (:func:`stack_reason` says why): convolutions,
recurrent networks, batch normalisation (its statistics would mix runs), learned likelihood
scales.
"""

from __future__ import annotations

import contextvars
import copy
import math

import numpy as np
import torch
from torch import nn

from mvae_cli.model.nets import CategoricalEncoder, MLPDecoder, MLPEncoder
from mvae_cli.model.rows import current_row_runs, index

# parameter-free layers that act on each row alone
_ROW_WISE = (nn.SiLU, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Flatten, nn.Unflatten, nn.ELU, nn.LeakyReLU,
             nn.GELU, nn.Softplus)


def stack_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked (None when it can)."""
    for name in ("encoders", "decoders"):
        if not isinstance(getattr(model, name, None), nn.ModuleDict):
            return f"{type(model).__name__} has no {name} table"
    for table in (model.encoders, model.decoders):
        for key, net in table.items():
            why = _net_reason(net)
            if why:
                return f"the network of {key} {why}"
    nets = {id(p) for table in (model.encoders, model.decoders) for p in table.parameters()}
    others = [name for name, p in model.named_parameters() if id(p) not in nets]
    if others:
        return f"its parameters {', '.join(others[:3])} are outside its encoders and decoders (a learned likelihood scale?)"
    return None


def _net_reason(net: nn.Module) -> str | None:
    if isinstance(net, CategoricalEncoder):
        return _net_reason(net.net)
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Sequential)) or isinstance(module, _ROW_WISE) or module is net:
            continue
        if isinstance(module, (MLPEncoder, MLPDecoder)):
            continue
        return f"has a {type(module).__name__} layer, which does not stack"
    if hasattr(net, "log_prob"):
        return "scores its own likelihood"
    return None


class StackedLinear(nn.Module):
    """N linear layers on ``[N·C, in]`` rows (run r's rows the r-th block of C): ``[N·C, out]``.

    The weights are kept transposed, ``[N, in, out]``: the product and both of its gradients are
    then batched products of contiguous operands (with ``nn.Linear``'s ``[out, in]`` layout the
    weight's gradient is a strided copy as large as the weights, every step).
    """

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().t() for layer in layers]).contiguous())
        self.bias = (nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))  # [N, out]
                     if layers[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = _SEGMENT.get()  # (block, {layer: its weights and biases split by block}) inside a StackedNet
        if part is None or part[1] is None:
            return self._product(x, self.weight, self.bias)
        weights, biases = part[1][id(self)]
        return self._product(x, weights[part[0]], biases[part[0]])

    @staticmethod
    def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Runs of ``weight [n, in, out]`` on their ``[n·C, in]`` rows."""
        x = x.reshape(weight.shape[0], -1, x.shape[-1])
        if bias is None:
            y = torch.bmm(x, weight)
        else:
            y = torch.baddbmm(bias.unsqueeze(1), x, weight)
        return y.reshape(-1, weight.shape[2])


def _stack_layers(nets: list[nn.Module]) -> nn.Module:
    """A copy of ``nets[0]`` whose linear layers hold every net's weights (:class:`StackedLinear`)."""
    stacked = copy.deepcopy(nets[0])
    for name, module in list(stacked.named_modules()):
        if isinstance(module, nn.Linear):
            layers = [net.get_submodule(name) for net in nets]
            parent, _, leaf = name.rpartition(".")
            setattr(stacked.get_submodule(parent) if parent else stacked, leaf, StackedLinear(layers))
    return stacked


_SEGMENT: contextvars.ContextVar = contextvars.ContextVar("stack_segment", default=None)


# What one more padded block costs a layer (about three more small products and the padding's
# copies), in multiply-adds of the rows it saves: below it, splitting is slower than padding.
SPLIT_MACS_PER_LAYER = 2_000_000


def _segments(counts: np.ndarray, row_macs: float = math.inf, layers: int = 1) -> list[tuple[int, int, int]]:
    """Runs ``a:b`` padded to ``C`` rows each, ``[(a, b, C), ...]`` covering every run in order.

    One block of the largest count unless splitting where the counts jump (a run with more than
    1.5 × the smallest count of its block, plus 8, starts a new one) saves at least a quarter of the
    padded rows, and those rows' work (``row_macs`` multiply-adds a row, through ``layers``
    layers) is worth more than the extra blocks' products (:data:`SPLIT_MACS_PER_LAYER` a layer and
    block): a stack of supervision levels then pads its sparse runs to their own size in its large
    networks (an image's), and pads them to the largest in its small ones (an attribute's, whose
    rows cost less than the extra products' dispatch).
    """
    n = counts.size
    top = max(int(counts.max()) if n else 0, 1)
    blocks, a, low, high = [], 0, None, 0
    for r, c in enumerate(counts.tolist()):
        if low is not None and c > 1.5 * low + 8 or low is not None and low > 1.5 * c + 8:
            blocks.append((a, r, max(high, 1)))
            a, low, high = r, None, 0
        low = c if low is None else min(low, c)
        high = max(high, c)
    blocks.append((a, n, max(high, 1)))
    saved = n * top - sum((b - a) * c for a, b, c in blocks)
    if len(blocks) == 1 or saved < 0.25 * n * top or saved * row_macs < SPLIT_MACS_PER_LAYER * layers * (len(blocks) - 1):
        return [(0, n, top)]
    return blocks


class _Layout:
    """Where the rows of runs ``runs int [R]`` (host, run after run) go in the padded blocks of
    :func:`_segments`: block ``s`` takes the rows ``bounds[s]:bounds[s + 1]`` of the input, run
    ``r`` of it padded to the block's C rows."""

    def __init__(self, runs: np.ndarray, n: int, device, row_macs: float = math.inf, layers: int = 1):
        if runs.size and np.any(np.diff(runs) < 0):
            raise ValueError("the rows of a stacked network must be ordered run after run")
        counts = np.bincount(runs, minlength=n)
        self.segments = _segments(counts, row_macs, layers)
        ends = np.cumsum(counts)
        self.bounds, self.positions = [0], []
        for a, b, c in self.segments:
            lo, hi = self.bounds[-1], int(ends[b - 1])
            local = runs[lo:hi] - a
            rank = np.arange(lo, hi) - (ends[runs[lo:hi]] - counts[runs[lo:hi]])
            position = local * c + rank
            identity = position.size == (b - a) * c  # every run of the block has C rows: nothing to pad
            self.positions.append(None if identity else (index(position, device), (b - a) * c))
            self.bounds.append(hi)

    def pad(self, s: int, x: torch.Tensor) -> torch.Tensor:
        x = x[self.bounds[s]:self.bounds[s + 1]] if len(self.segments) > 1 else x
        if self.positions[s] is None:
            return x
        position, rows = self.positions[s]
        return x.new_zeros((rows, *x.shape[1:])).index_copy(0, position, x)

    def unpad(self, s: int, y: torch.Tensor) -> torch.Tensor:
        return y if self.positions[s] is None else y.index_select(0, self.positions[s][0])


def _row_runs(rows: int) -> np.ndarray:
    """The run of each of the ``rows`` rows a stacked network is called on (:func:`~mvae_cli.model.rows.computing`)."""
    runs = current_row_runs()
    if runs is None or runs.shape[0] != rows:
        raise RuntimeError("a stacked network was called without the runs of its rows (mvae_cli.model.rows.computing)")
    return runs


class StackedNet(nn.Module):
    """N networks of one architecture, each applied to the rows of its run (:func:`~mvae_cli.model.rows.computing`)."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.n = len(nets)
        self.inner = _stack_layers(nets)
        shapes = [m.weight.shape[1:] for m in self.inner.modules() if isinstance(m, StackedLinear)]
        self.row_macs, self.layers = sum(i * o for i, o in shapes), len(shapes)  # a row's multiply-adds

    def forward(self, x: torch.Tensor):
        layout = _Layout(_row_runs(x.shape[0]), self.n, x.device, self.row_macs, self.layers)
        splits = None
        if len(layout.segments) > 1:  # each layer's weights split once (one concatenation in the backward)
            runs = [b - a for a, b, _ in layout.segments]
            splits = {id(m): (m.weight.split(runs), m.bias.split(runs) if m.bias is not None else [None] * len(runs))
                      for m in self.inner.modules() if isinstance(m, StackedLinear)}
        outs = []
        for s in range(len(layout.segments)):
            token = _SEGMENT.set((s, splits))
            try:
                out = self.inner(layout.pad(s, x))
            finally:
                _SEGMENT.reset(token)
            outs.append(tuple(layout.unpad(s, o) for o in out) if isinstance(out, tuple) else layout.unpad(s, out))
        if len(outs) == 1:
            return outs[0]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def unstack(self, r: int, net: nn.Module) -> None:
        """Copy run ``r``'s weights into ``net`` (its architecture)."""
        _copy_out(self.inner, r, net)


class StackedCategoricalEncoder(StackedNet):
    """N :class:`~mvae_cli.model.nets.CategoricalEncoder`: each run's network on its C class rows once,
    then each example's row picked from its run's table."""

    def __init__(self, nets: list[CategoricalEncoder]):
        nn.Module.__init__(self)
        self.n = len(nets)
        self.classes = nets[0].embed.num_embeddings
        self.embed = nn.Parameter(torch.stack([net.embed.weight.detach() for net in nets]))  # [N, C, hidden]
        self.net = _stack_layers([net.net for net in nets])

    def forward(self, x: torch.Tensor):
        runs = _row_runs(x.shape[0])
        table = self.net(self.embed.reshape(-1, self.embed.shape[-1]))  # [N·C, 2D]
        rows = index(runs * self.classes, x.device) + x.long()
        return table.index_select(0, rows).chunk(2, dim=-1)

    def unstack(self, r: int, net: nn.Module) -> None:
        with torch.no_grad():
            net.embed.weight.copy_(self.embed[r])
        _copy_out(self.net, r, net.net)


def _copy_out(stacked: nn.Module, r: int, net: nn.Module) -> None:
    with torch.no_grad():
        for name, module in stacked.named_modules():
            if isinstance(module, StackedLinear):
                target = net.get_submodule(name)
                target.weight.copy_(module.weight[r].t())
                if module.bias is not None:
                    target.bias.copy_(module.bias[r])


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One model computing the N runs of ``models`` (one architecture, :func:`stack_reason` None)
    on a stacked batch: a copy of ``models[0]`` whose encoders and decoders are stacked networks."""
    why = stack_reason(models[0])
    if why:
        raise ValueError(f"{type(models[0]).__name__} does not stack: {why}")
    stacked = copy.deepcopy(models[0])
    for table in ("encoders", "decoders"):
        for key in getattr(stacked, table):
            nets = [getattr(model, table)[key] for model in models]
            kind = StackedCategoricalEncoder if isinstance(nets[0], CategoricalEncoder) else StackedNet
            getattr(stacked, table)[key] = kind(nets)
    stacked.stack_size = len(models)
    return stacked


def unstack_into(stacked: nn.Module, r: int, model: nn.Module) -> None:
    """Copy run ``r``'s weights of ``stacked`` into ``model`` (one of the models it was stacked from)."""
    for table in ("encoders", "decoders"):
        for key, net in getattr(stacked, table).items():
            net.unstack(r, getattr(model, table)[key])


def stacked_parameters(stacked: nn.Module, models: list[nn.Module]) -> list[tuple[torch.Tensor, list[torch.Tensor], bool]]:
    """Each stacked parameter ``[N, ...]`` with the N runs' own parameters it holds and whether it
    holds them transposed (a linear layer's weight), in a fixed order (for carrying optimiser state
    between the stack and the runs)."""
    pairs = []
    for table in ("encoders", "decoders"):
        for key, net in getattr(stacked, table).items():
            own = [getattr(model, table)[key] for model in models]
            if isinstance(net, StackedCategoricalEncoder):
                pairs.append((net.embed, [o.embed.weight for o in own], False))
                inner, own = net.net, [o.net for o in own]
            else:
                inner = net.inner
            for name, module in inner.named_modules():
                if isinstance(module, StackedLinear):
                    targets = [o.get_submodule(name) for o in own]
                    pairs.append((module.weight, [t.weight for t in targets], True))
                    if module.bias is not None:
                        pairs.append((module.bias, [t.bias for t in targets], False))
    return pairs
