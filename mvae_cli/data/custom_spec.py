"""The YAML spec of ``custom`` data: the modalities, in order, and how to split the arrays.

See :mod:`mvae_cli.data.custom` for the format; this module only reads and checks the spec.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import yaml

from mvae_cli.data.format import SPLITS
from mvae_cli.errors import UserError

LIKELIHOOD = {"image": "bernoulli", "binary": "bernoulli", "categorical": "categorical", "sequence": "categorical"}
KEYS = {"image": {"shape"}, "binary": {"shape"}, "categorical": {"classes"}, "sequence": {"vocab", "shape"}}
COMMON_KEYS = {"name", "kind", "likelihood", "arrays"}
ARRAY_KEYS = (*SPLITS, "all")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _int(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{what} must be a whole number of at least {low}, got {value!r}")
    return value


def load_spec(path: str | os.PathLike) -> tuple[list[dict], dict[str, float] | None]:
    """Read and check a spec: ``([modality entry, ...], split fractions or None)``.

    Each entry has ``name``, ``kind``, ``likelihood``, ``classes`` (class count or
    vocabulary size, 0 otherwise) and ``shape`` (a tuple, or None to take it from the arrays).

    Raises:
        UserError: naming the spec and the key or modality at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"spec {path} is not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("modalities"), list) or not data["modalities"]:
        raise UserError(f"spec {path} needs a `modalities:` list (see the README, section 'custom: your own data')")
    unknown = set(data) - {"modalities", "split"}
    if unknown:
        raise UserError(f"spec {path}: unknown key {sorted(unknown)[0]!r} (keys: modalities, split)")
    entries, names = [], set()
    for i, item in enumerate(data["modalities"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not NAME.match(item["name"]):
            raise UserError(f"spec {path}: modality {i + 1} needs a name of letters, digits, _ . -")
        name = item["name"]
        where = f"spec {path}: modality {name!r}"
        if name in names or name == "masks" or name.endswith("_length"):
            raise UserError(f"{where}: the name is taken (used twice, 'masks', or ending in _length)")
        names.add(name)
        kind = item.get("kind")
        if kind not in LIKELIHOOD:
            raise UserError(f"{where}: kind must be one of {', '.join(LIKELIHOOD)}, got {kind!r}")
        unknown = set(item) - COMMON_KEYS - KEYS[kind]
        if unknown:
            raise UserError(f"{where}: key {sorted(unknown)[0]!r} is not for kind {kind} "
                            f"(allowed: {', '.join(sorted(COMMON_KEYS | KEYS[kind]))})")
        likelihood = item.get("likelihood", LIKELIHOOD[kind])
        if likelihood != LIKELIHOOD[kind]:
            raise UserError(f"{where}: kind {kind} takes likelihood {LIKELIHOOD[kind]}, not {likelihood!r}")
        classes = 0
        if kind in ("categorical", "sequence"):
            key = "classes" if kind == "categorical" else "vocab"
            if key not in item:
                raise UserError(f"{where}: kind {kind} needs `{key}:`")
            classes = _int(item[key], f"{where}: {key}", low=2 if kind == "categorical" else 3)
        shape = item.get("shape")
        if shape is not None:
            if not isinstance(shape, list) or not shape:
                raise UserError(f"{where}: shape must be a list such as [1, 28, 28], got {shape!r}")
            shape = tuple(_int(s, f"{where}: each shape entry") for s in shape)
            rank = {"image": 3, "binary": 1, "sequence": 1}[kind]
            if len(shape) != rank:
                raise UserError(f"{where}: a {kind} shape has {rank} entr{'y' if rank == 1 else 'ies'}, "
                                f"got {list(shape)}")
        arrays = item.get("arrays") or {}
        if not isinstance(arrays, dict) or not set(arrays) <= set(ARRAY_KEYS) or \
                not all(isinstance(v, str) and v for v in arrays.values()):
            raise UserError(f"{where}: arrays must map {', '.join(ARRAY_KEYS)} to key names in the source, "
                            f"e.g. {{train: x_train, test: x_test}}; got {arrays!r}")
        entries.append({"name": name, "kind": kind, "likelihood": likelihood, "classes": classes, "shape": shape,
                        "arrays": dict(arrays)})
    return entries, _fractions(path, data.get("split"))


def _fractions(path: Path, split) -> dict[str, float] | None:
    if split is None:
        return None
    if isinstance(split, dict) and set(split) == {"valid"}:  # carved from the training arrays only
        value = split["valid"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise UserError(f"spec {path}: split fraction valid must lie in (0, 1), got {value!r}")
        return {"valid": float(value)}
    if not isinstance(split, dict) or set(split) != set(SPLITS):
        raise UserError(f"spec {path}: split needs exactly train, valid and test, e.g. "
                        "{train: 0.8, valid: 0.1, test: 0.1}")
    for key, value in split.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise UserError(f"spec {path}: split fraction {key} must lie in (0, 1), got {value!r}")
    if not math.isclose(sum(split.values()), 1.0, abs_tol=1e-6):
        raise UserError(f"spec {path}: split fractions sum to {sum(split.values()):g}, not 1")
    return {s: float(split[s]) for s in SPLITS}
