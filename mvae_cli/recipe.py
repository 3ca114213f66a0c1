"""Recipes: YAML validated against typed dataclasses.

Unknown keys and bad values are :class:`UserError`\\ s naming the key. ``key=value``
overrides (dotted for nested keys: ``data.path=...``, ``model.latent_dim=32``) go
through the same validation. A run directory stores the fully resolved recipe.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mvae_cli import zoo
from mvae_cli.errors import UserError
from mvae_cli.eval_config import EvalConfig  # the recipe's eval section (torch-free: mvae eval's defaults)
from mvae_cli.model.likelihoods import parse_likelihood


@dataclass
class DataConfig:
    dataset: str = "shapes"  # a name known to `mvae prepare`
    path: str | None = None  # default: data/<dataset>.h5
    source: str | None = None  # folder of source files for `mvae prepare`, when the file must be built
    base: str | None = None  # `transforms` only: celeba | shapes
    spec: str | None = None  # `custom` only: the YAML spec of the user's arrays
    binarize: bool = False  # image pixels drawn as x ~ Bernoulli(x/255) (training: every batch anew)

    def resolved_path(self) -> Path:
        return Path(self.path) if self.path else Path("data") / f"{self.dataset}.h5"


@dataclass
class ModelConfig:
    name: str = "mvae"  # the model and, with it, its objective (mvae_cli.zoo: the model table)
    latent_dim: int = 64
    hidden: int = 512
    image_net: str = "mlp"  # mlp | conv (miniature DCGAN, 2 layers) | dcgan (4 layers)
    weights: dict[str, float] = field(default_factory=dict)  # λ per modality name, default 1
    # every λ times D_max / D_m, D_m the values modality m's likelihood scores (MultiVae's rescale_factors)
    rescale: bool = False
    likelihoods: dict[str, str] = field(default_factory=dict)  # modality -> likelihood, default the dataset's
    private_dim: int = 4  # mmjsd: each modality's private latent block s_m (latent_dim is the shared c)
    posterior: str = "gaussian"  # mmvae: gaussian | laplace, the experts' and the prior's family (Shi et al. use laplace)


@dataclass
class ObjectiveConfig:
    """Each objective's own settings; a model's objective takes only its own (the model table,
    :mod:`mvae_cli.zoo`), and a recipe that sets another model's is refused."""

    k: int | None = None  # mvae, mvae-q: random-subset ELBOs; None: 1 with more than two modalities, else 0
    mu: float = 0.5  # bivcca: weight of the primary modality's ELBO (1 − mu for the others)
    alpha: float = 0.1  # jmvae: weight of the KL terms of JMVAE-kl
    k_particles: int = 1  # mmvae: particles per expert of the stratified IWAE bound (1: the mixture ELBO)
    estimator: str = "iwae"  # mmvae: gradient estimator, iwae | dreg
    # mvae, mvae-q: cross reconstruction, "given:target" -> λ: the ELBO of q(z | given) on a row that
    # also shows target scores λ log p(target | z) too
    cross: dict[str, float] = field(default_factory=dict)
    # mvae, mvae-q: α of the alignment term α Σ_i KL[q(z|X) ‖ q(z|x_i)] on every example showing two or more
    # modalities (JMVAE-kl's, with the product of experts as the joint posterior); 0: the paper's objective
    align: float = 0.0


def check_eval(config: EvalConfig, options: bool = False) -> EvalConfig:
    """``config`` validated as a recipe's ``eval`` section is (types, choices, ranges): ``mvae eval``'s
    options and library callers go through it, so ``--particles 0`` is the error ``eval.particles: 0`` is.

    Args:
        options: name the command-line option (``--prior-samples``) in the error, not the recipe key.

    Raises:
        UserError: naming the key (``eval.particles``) or the option.
    """
    try:
        return _build(EvalConfig, dataclasses.asdict(config), prefix="eval.")
    except UserError as error:
        if not options:
            raise
        message = str(error)
        for f in dataclasses.fields(EvalConfig):
            message = message.replace(f"recipe key 'eval.{f.name}'", f"--{f.name.replace('_', '-')}")
        raise UserError(message) from None


@dataclass
class SlurmConfig:
    """Resources of each point's job under ``mvae sweep --backend slurm`` (one array task per point)."""

    partition: str | None = None
    account: str | None = None
    time_min: int = 240  # wall-clock limit per task; a task that reaches it is requeued and resumes
    gpus: int = 1  # per point
    cpus: int = 4  # per point
    mem_gb: float = 16.0  # per point
    parallel: int | None = None  # array tasks running at once (default: all)


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    supervision: float | None = None  # paired fraction in [0, 1]
    keep_prob: float | None = None  # per-modality keep probability in (0, 1]
    seed: int = 0
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    anneal_epochs: float = 0.0  # β rises linearly from 0 to `beta` over this many epochs
    beta: float = 1.0  # the β target; below 1 against posterior collapse
    free_bits: float = 0.0  # KL floor in nats per latent unit (batch average); 0: plain ELBO
    paired_repeat: int = 1  # each fully observed row is shown this many times per epoch; 1: the paper
    # a fixed share of every batch from the fully observed rows (an epoch: one pass over the others); None: the paper
    paired_share: float | None = None
    checkpoint_every: int = 1  # write last.pt every N epochs (and at the end)
    checkpoint_minutes: float | None = None  # ... or when this many minutes passed since the last one
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16
    eval: EvalConfig = field(default_factory=EvalConfig)
    nproc: int = 1  # data-parallel ranks of one run (one GPU each on CUDA)
    trackers: list[str] = field(default_factory=list)  # tensorboard | mlflow, beside metrics.jsonl
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    grid: dict[str, list] = field(default_factory=dict)  # sweep recipes only: key -> values
    variants: dict[str, dict] = field(default_factory=dict)  # sweep recipes only: name -> overrides (grid key variant)
    # sweep recipes only: stacks (or points that do not stack) trained at once, each in its own process; --jobs overrides
    jobs: int = 1


# Mappings whose keys are modality names: `model.weights.image=2` sets one entry (`objective.cross.image:label=1`).
DICT_KEYS = ("model.weights.", "model.likelihoods.", "objective.cross.")

# Keys of older recipes and run directories, read as their new place.
LEGACY_KEYS = {"k": "objective.k"}

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "precision": ("fp32", "bf16", "fp16"),
    "model.image_net": ("mlp", "conv", "dcgan"),
    "model.posterior": ("gaussian", "laplace"),
    "objective.estimator": ("iwae", "dreg"),
    "eval.split": ("test", "valid"),
    "eval.checkpoint": ("best", "last"),
    "eval.precision": ("fp32", "bf16"),
}
# key -> (low, high, low_open): the allowed interval
_RANGES = {
    "supervision": (0.0, 1.0, False),
    "keep_prob": (0.0, 1.0, True),
    "objective.k": (0, None, False),
    "objective.mu": (0.0, 1.0, False),
    "objective.alpha": (0.0, None, False),
    "objective.align": (0.0, None, False),
    "objective.k_particles": (1, None, False),
    "seed": (0, None, False),
    "epochs": (1, None, False),
    "batch_size": (1, None, False),
    "lr": (0.0, None, True),
    "anneal_epochs": (0.0, None, False),
    "beta": (0.0, None, True),
    "free_bits": (0.0, None, False),
    "paired_repeat": (1, None, False),
    "paired_share": (0.0, 1.0, True),
    "checkpoint_every": (1, None, False),
    "checkpoint_minutes": (0.0, None, True),
    "model.latent_dim": (1, None, False),
    "model.hidden": (1, None, False),
    "model.private_dim": (0, None, False),
    "eval.particles": (1, None, False),
    "eval.prior_samples": (1, None, False),
    "eval.limit": (1, None, False),
    "nproc": (1, None, False),
    "jobs": (1, None, False),
    "slurm.time_min": (1, None, False),
    "slurm.gpus": (0, None, False),
    "slurm.cpus": (1, None, False),
    "slurm.mem_gb": (0.0, None, True),
    "slurm.parallel": (1, None, False),
}


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """Coerce ``value`` to ``hint`` or raise a UserError naming ``key``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, value, args[0])
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"recipe key {key!r} must be a mapping, got {value!r}")
        return _build(hint, value, prefix=f"{key}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"recipe key {key!r} must be a mapping, got {value!r}")
        _, vtype = typing.get_args(hint)
        return {str(k): (_check_value(f"{key}.{k}", v, vtype) if vtype not in (list, dict) else v)
                for k, v in value.items()}
    if origin is list:
        (etype,) = typing.get_args(hint)
        if not isinstance(value, list):
            value = [value]
        return [_check_value(f"{key}[{i}]", v, etype) for i, v in enumerate(value)]
    if hint is list:
        return value if isinstance(value, list) else [value]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # NaN passes every range check: refuse it here, once for all keys
                raise UserError(f"recipe key {key!r} must be a finite number, got {value!r}")
            return float(value)
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise UserError(f"recipe key {key!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _choices(key: str) -> tuple | None:
    """The values ``key`` takes, where it is a choice (``model.name``: the model table's names)."""
    return zoo.names() if key == "model.name" else _CHOICES.get(key)


def _check_range(key: str, value: Any) -> None:
    if value is None:
        return
    choices = _choices(key)
    if choices is not None and value not in choices:
        raise UserError(f"recipe key {key!r} must be one of {', '.join(choices)}, got {value!r}")
    if key in _RANGES:
        low, high, low_open = _RANGES[key]
        bad = value <= low if low_open else value < low
        bad = bad or (high is not None and value > high)
        if bad:
            interval = f"{'(' if low_open else '['}{low}, {high if high is not None else '∞'}{']' if high is not None else ')'}"
            raise UserError(f"recipe key {key!r} must lie in {interval}, got {value!r}")


def unknown_key(key: str, known: set[str] | list[str], where: str = "") -> UserError:
    """The error for a key no recipe takes, with the closest known keys when there are any
    (``unknown recipe key 'epochz' in override 'epochz=3'; did you mean 'epochs'?``).

    Args:
        key: the dotted key as given.
        known: the keys that would have been accepted in its place.
        where: how the key was given (``in grid``, ``in override 'epochz=3'``), or what is known.
    """
    scores = {k: difflib.SequenceMatcher(None, key, k).ratio() for k in known}
    # a key cut short (`anneal` for `anneal_epochs`) counts as close as a misspelt one
    scores.update({k: max(scores[k], 0.8) for k in known if len(key) >= 3 and k.startswith(key)})
    best = max(scores.values(), default=0.0)
    close = sorted((k for k, v in scores.items() if v >= 0.75 and v >= best - 0.05), key=lambda k: -scores[k])[:3]
    if where.startswith("known:"):  # the list of known keys, unless a close one says more
        where = "" if close else f" ({where})"
    else:
        where = f" {where}" if where else ""
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UserError(f"unknown recipe key {key!r}{where}{hint}")


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise unknown_key(prefix + str(key), {prefix + n for n in names},
                              f"known: {', '.join(sorted(names))}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _check_value(prefix + f.name, raw[f.name], hints[f.name])
            if not dataclasses.is_dataclass(hints[f.name]):
                _check_range(prefix + f.name, values[f.name])
    return cls(**values)


TRACKERS = ("tensorboard", "mlflow")


def migrate_legacy(raw: dict) -> dict:
    """Read an older recipe's keys in their new place: ``objective: mvae`` (the model now names its
    objective) and a top-level ``k`` (now ``objective.k``; it wins over ``objective.k``)."""
    raw = dict(raw)
    objective = raw.get("objective")
    if isinstance(objective, str):
        if objective != "mvae":
            raise UserError(f"recipe key 'objective' is now a mapping of the objective's settings; "
                            f"choose the model (and so its objective) with model.name, got objective: {objective!r}")
        raw["objective"] = {}
    for old, new in LEGACY_KEYS.items():
        if old in raw:
            value = raw.pop(old)
            section, _, key = new.partition(".")
            raw[section] = {**(raw.get(section) or {}), key: value}
    return raw


def model_settings(section: str, model: str) -> tuple[str, ...]:
    """The keys of ``section`` (``model`` or ``objective``) that ``model`` takes (the model table)."""
    entry = zoo.entry(model)
    if section == "model":
        return ("name", "rescale", *zoo.SHARED_SETTINGS, *entry.settings)
    return entry.objective_settings


def foreign_settings(recipe: Recipe) -> list[tuple[str, Any]]:
    """``(key, value)`` of every ``model.*`` and ``objective.*`` key the recipe sets (to other than its
    default) that its model does not take."""
    found = []
    for section, defaults in (("model", ModelConfig()), ("objective", ObjectiveConfig())):
        own = model_settings(section, recipe.model.name)
        for f in dataclasses.fields(defaults):
            value = getattr(getattr(recipe, section), f.name)
            if f.name not in own and value != getattr(defaults, f.name):
                found.append((f"{section}.{f.name}", value))
    return found


def check_model_settings(recipe: Recipe) -> None:
    """Refuse a setting meant for another model than ``model.name`` (never silently dropped).

    Raises:
        UserError: naming the key, the models that take it and the recipe's model.
    """
    for key, value in foreign_settings(recipe):
        section, _, name = key.partition(".")
        takers = [m for m in zoo.names() if name in model_settings(section, m)]
        raise UserError(f"{key}={value} is for {', '.join(takers) or 'no model'}; model.name={recipe.model.name} "
                        f"does not take it: remove it, or choose a model that does")


def recipe_from_dict(raw: dict | None, check_settings: bool = True) -> Recipe:
    """Validate a plain mapping into a :class:`Recipe` (older keys read through :func:`migrate_legacy`).

    Args:
        check_settings: refuse settings the recipe's model does not take (:func:`check_model_settings`);
            a sweep recipe whose grid varies ``model.name`` is checked point by point instead
            (:func:`mvae_cli.sweep.grid.expand_grid`).
    """
    recipe = _build(Recipe, migrate_legacy(raw or {}))
    for name, value in recipe.model.likelihoods.items():
        parse_likelihood(f"model.likelihoods.{name}", value)
    for name in recipe.trackers:
        if name not in TRACKERS:
            raise UserError(f"recipe key 'trackers' takes {', '.join(TRACKERS)}, got {name!r}")
    if recipe.supervision is not None and recipe.keep_prob is not None:
        raise UserError("a recipe takes supervision or keep_prob, not both")
    if check_settings and "model.name" not in recipe.grid:  # a grid over models checks each point
        check_model_settings(recipe)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


def load_recipe_dict(path: str | Path) -> dict:
    """Read a recipe file as a plain mapping (not yet validated)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"recipe {path} is a folder; give a recipe YAML file")
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    raw = parse_yaml(path, "recipe")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of keys to values")
    return raw


def parse_yaml(path: Path, what: str) -> Any:
    """Read a YAML file the user wrote (or a run wrote and someone edited).

    Raises:
        UserError: not UTF-8, or not valid YAML, naming the file and the place.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise UserError(f"{what} {path} is not valid YAML{at}: {str(error).splitlines()[0]}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.latent_dim=32"`` → ``("model.latent_dim", 32)``; values are read as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not KEY=VALUE")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise UserError(f"override {text!r} has no key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``key = "a.b"``, creating mappings on the way."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"recipe key {part!r} is not a mapping, so {key!r} cannot be set")
        node = child
    node[parts[-1]] = value


def set_key(raw: dict, key: str, value: Any) -> None:
    """:func:`set_dotted`, except that a grid key is itself dotted: ``grid.model.name`` sets ``grid["model.name"]``."""
    if not key.startswith("grid."):
        set_dotted(raw, key, value)
        return
    grid = raw.setdefault("grid", {})
    if not isinstance(grid, dict):
        raise UserError(f"recipe key 'grid' is not a mapping, so {key!r} cannot be set")
    grid[key[len("grid."):]] = value


def get_dotted(raw: dict, key: str) -> Any:
    node = raw
    for part in key.split("."):
        node = node[part]
    return node


def known_keys(cls=Recipe, prefix: str = "") -> set[str]:
    """Every dotted key a recipe accepts (for grids and error messages)."""
    keys = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        keys.add(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= known_keys(hints[f.name], prefix + f.name + ".")
    return keys


def resolve_recipe(path: str | Path | None, overrides: list[str] = (), extra: dict[str, Any] | None = None) -> Recipe:
    """Load a recipe file (or the defaults), apply ``extra`` then ``KEY=VALUE`` overrides, validate."""
    raw = migrate_legacy(load_recipe_dict(path)) if path else {}
    for key, value in (extra or {}).items():
        set_dotted(raw, key, value)
    for text in overrides:
        key, value = parse_override(text)
        key = LEGACY_KEYS.get(key, key)
        if key not in known_keys() and not key.startswith(DICT_KEYS + ("grid.",)):
            raise unknown_key(key, known_keys(), f"in override {text!r}")
        set_key(raw, key, value)
    return recipe_from_dict(raw)
