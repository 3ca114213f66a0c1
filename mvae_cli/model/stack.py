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
gradient; runs whose counts differ much are padded in blocks of their own, :func:`_segments`, the
blocks one after another in one tensor and each layer one product a block, :class:`_BlockLinear`),
and returns the rows in their order. The gradient of each run's weights comes from its own rows
only: a run of a stack computes what it computes alone, up to the rounding of the batched products.

The like networks of several modalities (categorical attributes' encoders, their decoders) are one
stacked network of (modalities × N) runs, :class:`NetGroup`; the model's code asks which names
compute together (:func:`net_groups`) and calls a group once (:func:`run_group`).

What stacks: networks of linear layers, embeddings and parameter-free layers (MLP encoders and
decoders, the categorical encoder). What does not (:func:`stack_reason` says why): convolutions,
recurrent networks, batch normalisation (its statistics would mix runs), learned likelihood
scales.
"""

from __future__ import annotations

import contextvars
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mvae_cli.model.likelihoods import Categorical
from mvae_cli.model.nets import CategoricalEncoder, MLPDecoder, MLPEncoder
from mvae_cli.model.rows import current_row_runs, index, run_of

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
        blocks = _SEGMENT.get()  # inside a StackedNet whose runs are padded in blocks: _Layout.blocks
        if blocks is None:
            return self._product(x, self.weight, self.bias)
        return _BlockLinear.apply(x, self.weight, self.bias, blocks)

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


class _BlockLinear(torch.autograd.Function):
    """N linear layers on rows padded in blocks (:class:`_Layout`): block ``(a, b, C, o)`` holds runs
    ``a:b``, C rows each, at rows ``o:o + (b − a)·C``. One batched product a block, written into one
    output, and in the backward into one gradient of the whole weight (no split of the weights, no
    concatenation of their gradients), so the layers between (activations) run once on all blocks."""

    @staticmethod
    def forward(ctx, x, weight, bias, blocks):
        device = x.device.type
        if torch.is_autocast_enabled(device):  # the products' dtype, as autocast gives bmm
            dtype = torch.get_autocast_dtype(device)
            x, w, b = x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)
        else:
            w, b = weight, bias
        with torch.autocast(device, enabled=False):
            out = x.new_empty(x.shape[0], w.shape[2])
            for a, z, c, o in blocks:
                xs, ys = x[o:o + (z - a) * c].view(z - a, c, -1), out[o:o + (z - a) * c].view(z - a, c, -1)
                if b is None:
                    torch.bmm(xs, w[a:z], out=ys)
                else:
                    torch.baddbmm(b[a:z].unsqueeze(1), xs, w[a:z], out=ys)
        ctx.save_for_backward(x, w)
        ctx.blocks, ctx.has_bias, ctx.dtypes = blocks, bias is not None, (weight.dtype, None if bias is None else bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        grad = grad.to(x.dtype).contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = grad.new_empty(x.shape) if need_x else None
        gw = torch.empty_like(w) if need_w else None
        gb = grad.new_empty(w.shape[0], w.shape[2]) if need_b and ctx.has_bias else None
        with torch.autocast(x.device.type, enabled=False):
            for a, z, c, o in ctx.blocks:
                rows = slice(o, o + (z - a) * c)
                gs = grad[rows].view(z - a, c, -1)
                if gx is not None:
                    torch.bmm(gs, w[a:z].transpose(1, 2), out=gx[rows].view(z - a, c, -1))
                if gw is not None:
                    torch.bmm(x[rows].view(z - a, c, -1).transpose(1, 2), gs, out=gw[a:z])
                if gb is not None:
                    torch.sum(gs, dim=1, out=gb[a:z])
        gw = None if gw is None else gw.to(ctx.dtypes[0])
        gb = None if gb is None else gb.to(ctx.dtypes[1])
        return gx, gw, gb, None


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
    :func:`_segments`, one after another in one tensor: block ``(a, b, C, o)`` holds runs ``a:b``,
    C rows each (padding rows zero), from row ``o``; ``rows`` in all."""

    def __init__(self, runs: np.ndarray, n: int, device, row_macs: float = math.inf, layers: int = 1):
        if runs.size and np.any(np.diff(runs) < 0):
            raise ValueError("the rows of a stacked network must be ordered run after run")
        counts = np.bincount(runs, minlength=n)
        starts = np.cumsum(counts) - counts  # each run's first row in the input
        self.blocks, self.rows = [], 0
        offset_of_run = np.zeros(n, dtype=np.int64)
        for a, b, c in _segments(counts, row_macs, layers):
            self.blocks.append((a, b, c, self.rows))
            offset_of_run[a:b] = self.rows + (np.arange(a, b) - a) * c
            self.rows += (b - a) * c
        self.blocks = tuple(self.blocks)
        position = offset_of_run[runs] + (np.arange(runs.size) - starts[runs])
        # every run has its block's C rows and the blocks follow the runs: nothing to pad
        self.position = None if position.size == self.rows else index(position, device)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.position is None:
            return x
        return x.new_zeros((self.rows, *x.shape[1:])).index_copy(0, self.position, x)

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.position is None else y.index_select(0, self.position)


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
        return self.rows(x, _row_runs(x.shape[0]))

    def rows(self, x: torch.Tensor, runs: np.ndarray):
        """The networks on ``x``, row ``i`` computed by network ``runs[i]`` (host, ordered)."""
        layout = _Layout(runs, self.n, x.device, self.row_macs, self.layers)
        token = _SEGMENT.set(layout.blocks if len(layout.blocks) > 1 else None)
        try:
            out = self.inner(layout.pad(x))
        finally:
            _SEGMENT.reset(token)
        return tuple(layout.unpad(o) for o in out) if isinstance(out, tuple) else layout.unpad(out)


class StackedCategoricalEncoder(StackedNet):
    """N :class:`~mvae_cli.model.nets.CategoricalEncoder`: each run's network on its C class rows once,
    then each example's row picked from its run's table."""

    def __init__(self, nets: list[CategoricalEncoder]):
        nn.Module.__init__(self)
        self.n = len(nets)
        self.classes = nets[0].embed.num_embeddings
        self.embed = nn.Parameter(torch.stack([net.embed.weight.detach() for net in nets]))  # [N, C, hidden]
        self.net = _stack_layers([net.net for net in nets])

    def rows(self, x: torch.Tensor, runs: np.ndarray):
        table = self.net(self.embed.reshape(-1, self.embed.shape[-1]))  # [N·C, 2D]
        rows = index(runs * self.classes, x.device) + x.long()
        return table.index_select(0, rows).chunk(2, dim=-1)



# --- Modalities grouped: one stacked network for the like networks of several modalities ------------------

# The logit a grouped decoder gives the classes its modality lacks: exp(PAD_LOGIT − max) is exactly 0
# in float32, so on its own classes the padded network's softmax, log-likelihood and every gradient
# are the unpadded one's (and the padding's own gradients are 0: Adam leaves it as it is).
PAD_LOGIT = -1e9


def _width(net: nn.Module) -> int:
    """The classes of a categorical encoder, the outputs of a (flat) decoder."""
    return net.embed.num_embeddings if isinstance(net, CategoricalEncoder) else net.net[-1].out_features


def _padded(net: nn.Module, width: int) -> nn.Module:
    """A copy of ``net`` for ``width`` classes: a categorical encoder's embedding with zero rows for the
    classes it lacks (never looked up), a decoder's last layer with outputs for them at
    :data:`PAD_LOGIT` (zero weights). On its own classes it computes what ``net`` does."""
    net = copy.deepcopy(net)
    if _width(net) == width:
        return net
    with torch.no_grad():
        if isinstance(net, CategoricalEncoder):
            old = net.embed
            net.embed = nn.Embedding(width, old.embedding_dim).to(old.weight)
            net.embed.weight.zero_()[:old.num_embeddings] = old.weight
        else:
            old = net.net[-1]
            new = nn.Linear(old.in_features, width).to(old.weight)
            new.weight.zero_()[:old.out_features] = old.weight
            new.bias.fill_(PAD_LOGIT)[:old.out_features] = old.bias
            net.net[-1] = new
            net.out_shape = (width,)
    return net


def _group_key(model: nn.Module, table: str, name: str):
    """Networks of equal keys compute as one group (:class:`NetGroup`): categorical encoders of one
    shape, whatever their classes; flat decoders of one shape but their outputs, each scored by a
    categorical likelihood, in a model whose ``decode(name, z)`` is ``decoders[name](z)`` and whose
    ``log_prob`` is its likelihood's (``plain_decoders``). None: alone."""
    net = getattr(model, table)[name]

    def layers(seq):
        return tuple((type(m).__name__, tuple(m.weight.shape) if isinstance(m, nn.Linear) else ()) for m in seq)

    if table == "encoders" and type(net) is CategoricalEncoder:
        return "categorical", net.embed.embedding_dim, layers(net.net)
    if (table == "decoders" and type(net) is MLPDecoder and len(net.out_shape) == 1
            and name in getattr(model, "likelihoods", {}) and isinstance(model.likelihoods[name], Categorical)
            and getattr(model, "plain_decoders", False)):
        shape = layers(net.net)
        return "flat", shape[:-1], shape[-1][1][1]  # the last layer's input width (its outputs may differ)
    return None


class NetGroup(nn.Module):
    """The like networks of G modalities (:func:`_group_key`), N runs each, as one stacked network of
    G·N runs: run r of member g is run g·N + r, its classes padded to the most any member has
    (:func:`_padded`). A step then computes the G modalities' rows in one batched product a layer,
    not G (the quick start's five attributes: a fifth of the small products and their dispatch)."""

    def __init__(self, table: str, names: list[str], nets: list[list[nn.Module]]):
        super().__init__()
        self.table, self.names, self.n = table, list(names), len(nets[0])
        self.widths = [_width(own[0]) for own in nets]
        padded = [_padded(net, max(self.widths)) for own in nets for net in own]
        self.pads_output = not isinstance(padded[0], CategoricalEncoder)
        self.net = (StackedNet if self.pads_output else StackedCategoricalEncoder)(padded)

    def rows(self, x: torch.Tensor, runs: np.ndarray):
        return self.net.rows(x, runs)


class _GroupMember(nn.Module):
    """Member ``g`` of a :class:`NetGroup` as a network of its own: a call on its rows alone, its
    outputs cut to its own classes."""

    def __init__(self, group: NetGroup, g: int):
        super().__init__()
        self.__dict__["group"] = group  # not a submodule: the group's parameters are the stacked model's once
        self.g = g

    def forward(self, x: torch.Tensor):
        out = self.group.rows(x, _row_runs(x.shape[0]) + self.g * self.group.n)
        return out[:, :self.group.widths[self.g]] if self.group.pads_output else out


def like_networks(model: nn.Module) -> list[tuple[str, list[str]]]:
    """The networks of ``model`` a stack computes as one group (:class:`NetGroup`): ``(table, names)``,
    two names or more each, in the table's order."""
    out = []
    for table in ("encoders", "decoders"):
        alike: dict = {}
        for key in getattr(model, table):
            group_key = _group_key(model, table, key)
            if group_key is not None:
                alike.setdefault(group_key, []).append(key)
        out += [(table, keys) for keys in alike.values() if len(keys) > 1]
    return out


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One model computing the N runs of ``models`` (one architecture, :func:`stack_reason` None)
    on a stacked batch: a copy of ``models[0]`` whose encoders and decoders are stacked networks,
    those of like modalities grouped (``stacked.groups``, :class:`NetGroup`)."""
    why = stack_reason(models[0])
    if why:
        raise ValueError(f"{type(models[0]).__name__} does not stack: {why}")
    stacked = copy.deepcopy(models[0])
    groups, alike = [], like_networks(models[0])
    for table in ("encoders", "decoders"):
        nets = {key: [getattr(model, table)[key] for model in models] for key in getattr(stacked, table)}
        members = {}
        for keys in (keys for t, keys in alike if t == table):
            groups.append(NetGroup(table, keys, [nets[key] for key in keys]))
            members.update({key: _GroupMember(groups[-1], g) for g, key in enumerate(keys)})
        for key, own in nets.items():
            kind = StackedCategoricalEncoder if isinstance(own[0], CategoricalEncoder) else StackedNet
            getattr(stacked, table)[key] = members[key] if key in members else kind(own)
    stacked.groups = nn.ModuleList(groups)
    stacked.stack_size = len(models)
    return stacked


def net_groups(table: nn.ModuleDict, names: list[str]) -> list[list[str]]:
    """``names`` as their networks compute: the members of a :class:`NetGroup` together (in the
    group's order, where its first member comes), every other name alone."""
    out, seen = [], set()
    for name in names:
        net = table[name] if name in table else None
        if not isinstance(net, _GroupMember):
            out.append([name])
        elif id(net.group) not in seen:
            seen.add(id(net.group))
            out.append([n for n in net.group.names if n in names])
    return out


def run_group(table: nn.ModuleDict, names: list[str], batch: dict, x: torch.Tensor, examples: list[np.ndarray]):
    """The networks of ``names`` (a group of :func:`net_groups`, two or more) in one call on their rows:
    ``x`` holds the rows of ``names[0]``, then those of ``names[1]``, ...; ``examples[i]`` (host) is
    the example in ``batch`` of each row of ``names[i]``. A decoder group's outputs are padded to
    its widest member (:data:`PAD_LOGIT`)."""
    group = table[names[0]].group
    runs = [run_of(batch, e) + group.names.index(name) * group.n for name, e in zip(names, examples)]
    return group.rows(x, np.concatenate(runs))


def group_rows(batch: dict, names: list[str], examples: list[np.ndarray], device) -> torch.Tensor:
    """The values of ``names`` at ``examples`` (host, one array per name), one name's after another's."""
    if len(names) == 1:
        return batch[names[0]].index_select(0, index(examples[0], device))
    B = batch[names[0]].shape[0]
    return torch.cat([batch[n] for n in names]).index_select(
        0, index(np.concatenate([e + g * B for g, e in enumerate(examples)]), device))


@dataclass(eq=False, frozen=True)
class Share:
    """Where a run's own parameter ``name`` (in its model) lives in a stacked parameter: run r's in
    ``stacked[offset + r]``, cut to the own parameter's shape, transposed for a linear layer's weight."""

    stacked: nn.Parameter
    name: str
    transposed: bool
    offset: int = 0

    def part(self, t: torch.Tensor, r: int, own: torch.Tensor) -> torch.Tensor:
        """The view of ``t`` (shaped as ``stacked``: the weights, a gradient, an Adam moment) that holds
        run ``r``'s ``own``, in ``own``'s layout."""
        shape = own.shape[::-1] if self.transposed else own.shape
        view = t[self.offset + r][tuple(slice(0, s) for s in shape)]
        return view.t() if self.transposed else view


def stacked_parameters(stacked: nn.Module) -> list[Share]:
    """Every run's parameters in the stacked model (for copying weights and optimiser state between
    the stack and the runs), in a fixed order; a grouped parameter holds several of each run's."""
    shares = []

    def add(net: nn.Module, prefixes: list[str]) -> None:
        n = net.n // len(prefixes)
        categorical = isinstance(net, StackedCategoricalEncoder)
        inner, path = (net.net, "net.") if categorical else (net.inner, "")
        for g, prefix in enumerate(prefixes):
            if categorical:
                shares.append(Share(net.embed, f"{prefix}.embed.weight", False, g * n))
            for name, module in inner.named_modules():
                if isinstance(module, StackedLinear):
                    shares.append(Share(module.weight, f"{prefix}.{path}{name}.weight", True, g * n))
                    if module.bias is not None:
                        shares.append(Share(module.bias, f"{prefix}.{path}{name}.bias", False, g * n))

    for table in ("encoders", "decoders"):
        for key, net in getattr(stacked, table).items():
            if not isinstance(net, _GroupMember):
                add(net, [f"{table}.{key}"])
    for group in getattr(stacked, "groups", ()):
        add(group.net, [f"{group.table}.{key}" for key in group.names])
    return shares


def unstack_into(stacked: nn.Module, r: int, model: nn.Module) -> None:
    """Copy run ``r``'s weights of ``stacked`` into ``model`` (one of the models it was stacked from)."""
    with torch.no_grad():
        for share in stacked_parameters(stacked):
            own = model.get_parameter(share.name)
            own.copy_(share.part(share.stacked, r, own))
