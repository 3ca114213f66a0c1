"""Accuracy of the y modalities predicted from x alone (the MVAE paper's weak-supervision measure,
Figs. 4 and 5): decode every y modality at the mean of q(z | x), then compare with the truth.

Per kind of y modality, the keys of ``eval.json``'s ``accuracy`` (README.md, "mvae eval"):

- categorical ``name``: arg max of the logits; the fraction right.
- binary ``name``: each attribute is predicted present where its Bernoulli logit is above 0
  (probability above ½). A modality of one attribute (CelebA19's) reports ``name``; one of
  D > 1 (CelebA's 18 ``attributes``) reports ``name``, the mean over its attributes, and
  ``name/<attribute>`` per attribute, named from the dataset file where it names them,
  else by index (``name/0`` …).
- sequence ``name``: greedy decoding from START until STOP (``SequenceDecoder.generate``).
  ``name`` is exact match: the decoded string equals the true one. ``name/char`` is the
  per-character accuracy: a string is the tokens after position 0 up to its first STOP (the
  whole row without one); position i of an example counts as right when both strings have
  a character there and they agree, and every position up to the longer string's length
  counts, so a character missing from a short decode or added by a long one is wrong.
  Pooled over the split: Σ right / Σ max(len true, len decoded); 1 when every string is empty.
- ``mean``: the mean over every categorical modality, every binary attribute (each of
  CelebA's 18 once, so ``celeba`` and ``celeba19`` average the same 18 figures) and every
  sequence modality's exact match.
"""

from __future__ import annotations

import json
import math
from typing import Mapping, Sequence

import torch

ATTRIBUTE_NAMES_ATTR = "attribute_names"  # root attribute of a dataset file: JSON {modality: [names]}


def attribute_names(file_attrs: Mapping, specs) -> dict[str, list[str]]:
    """The names of the attributes of each binary modality of D > 1, from a dataset file's root
    attribute ``attribute_names`` (JSON ``{modality: [name, ...]}``); indices where it has none
    or they do not fit (wrong count, repeated names)."""
    try:
        given = json.loads(file_attrs.get(ATTRIBUTE_NAMES_ATTR) or "{}")
    except (TypeError, ValueError):
        given = {}
    given = given if isinstance(given, dict) else {}
    out = {}
    for spec in specs:
        if spec.kind != "binary":
            continue
        size = _size(spec)
        names = given.get(spec.name)
        if not (isinstance(names, list) and len(names) == size and len(set(map(str, names))) == size):
            names = range(size)
        out[spec.name] = [str(n) for n in names]
    return out


def _size(spec) -> int:
    return math.prod(int(d) for d in spec.shape)


def posterior_mean(model, expert_params: tuple[torch.Tensor, torch.Tensor], given: Sequence[str]) -> torch.Tensor:
    """The mean of q(z | given) ``[B, D]`` (``model.posterior``) from the experts ``(mu, logvar)`` ``[B, M, D]``."""
    return model.posterior(None, given, experts=expert_params).mean


def sequence_agreement(predicted: torch.Tensor, true: torch.Tensor, stop: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compare token rows ``[B, L]`` as strings (the tokens after position 0 up to the first ``stop``).

    Returns:
        ``(exact bool[B], right long[B], positions long[B])``: whether the strings are equal,
        the positions where both have the same character, and max(len true, len predicted).
    """
    width = max(predicted.shape[1], true.shape[1])
    predicted, true = (torch.nn.functional.pad(t.long(), (0, width - t.shape[1]), value=stop) for t in (predicted, true))
    length_p, length_t = _string_lengths(predicted, stop), _string_lengths(true, stop)
    positions = torch.arange(width - 1, device=true.device)
    both = (positions < length_p[:, None]) & (positions < length_t[:, None])
    right = ((predicted[:, 1:] == true[:, 1:]) & both).sum(dim=1)
    exact = (length_p == length_t) & (right == length_t)
    return exact, right, torch.maximum(length_p, length_t)


def _string_lengths(tokens: torch.Tensor, stop: int) -> torch.Tensor:
    """Characters before the first ``stop`` after position 0 (all of ``L − 1`` without one): ``long[B]``."""
    is_stop = tokens[:, 1:] == stop
    return torch.where(is_stop.any(dim=1), is_stop.int().argmax(dim=1), is_stop.shape[1]).long()


@torch.inference_mode()
def predict(model, spec, z: torch.Tensor) -> torch.Tensor:
    """The prediction of modality ``spec`` at latents ``z [B, D]``: class ids ``long[B]``
    (categorical), attributes ``bool[B, *shape]`` (binary) or greedy tokens ``long[B, L]`` (sequence)."""
    params = model.decode(spec.name, z)
    if spec.kind == "categorical":
        return params.argmax(dim=-1)
    if spec.kind == "binary":
        return params > 0
    if spec.kind == "sequence":
        return model.decoders[spec.name].generate(params)
    raise ValueError(f"no accuracy for modality kind {spec.kind!r}")


class AccuracyTally:
    """Counts of right predictions of the y modalities, batch by batch.

    Args:
        specs: the model's modalities.
        y: the predicted modalities; those of kind image are not predicted.
        names: attribute names per binary modality (:func:`attribute_names`); default indices.
    """

    KINDS = ("categorical", "binary", "sequence")

    def __init__(self, specs, y: Sequence[str], names: Mapping[str, Sequence[str]] | None = None):
        self.specs = [s for s in specs if s.name in y and s.kind in self.KINDS]
        self.names = {s.name: list((names or {}).get(s.name) or map(str, range(_size(s))))
                      for s in self.specs if s.kind == "binary"}
        self.right: dict[str, torch.Tensor] = {}  # name -> long counts ([D] for binary, [2] for sequence)
        self.positions: dict[str, int] = {}  # sequence name -> Σ max(len true, len decoded)
        self.n = 0

    def __bool__(self) -> bool:
        return bool(self.specs)

    def add(self, model, batch: dict[str, torch.Tensor], z_mean: torch.Tensor) -> None:
        """Predict every y modality of ``batch`` at ``z_mean`` ``[B, D]`` (the mean of q(z | x)) and count."""
        B = z_mean.shape[0]
        for spec in self.specs:
            predicted, true = predict(model, spec, z_mean), batch[spec.name]
            if spec.kind == "categorical":
                right = (predicted == true.long()).sum().reshape(1)
            elif spec.kind == "binary":
                right = (predicted.reshape(B, -1) == (true.reshape(B, -1) > 0.5)).sum(dim=0)
            else:
                exact, chars, positions = sequence_agreement(predicted, true, stop=spec.classes - 1)
                right = torch.stack([exact.sum(), chars.sum()])
                self.positions[spec.name] = self.positions.get(spec.name, 0) + int(positions.sum())
            right = right.cpu()
            self.right[spec.name] = self.right[spec.name] + right if spec.name in self.right else right
        self.n += B

    def result(self) -> dict[str, float]:
        """``{key: accuracy}`` in y's order, then ``mean`` (see the module docstring); empty without
        a predicted modality or an example."""
        out: dict[str, float] = {}
        pooled: list[float] = []  # the figures ``mean`` averages
        if not self.specs or self.n == 0:
            return out
        for spec in self.specs:
            right = self.right[spec.name].double()
            if spec.kind == "categorical":
                out[spec.name] = float(right[0]) / self.n
                pooled.append(out[spec.name])
            elif spec.kind == "binary":
                per_attribute = (right / self.n).tolist()
                out[spec.name] = sum(per_attribute) / len(per_attribute)
                if len(per_attribute) > 1:
                    for label, value in zip(self.names[spec.name], per_attribute):
                        out[f"{spec.name}/{label}"] = value
                pooled += per_attribute
            else:
                out[spec.name] = float(right[0]) / self.n
                positions = self.positions[spec.name]
                out[f"{spec.name}/char"] = float(right[1]) / positions if positions else 1.0
                pooled.append(out[spec.name])
        out["mean"] = sum(pooled) / len(pooled)
        return out
