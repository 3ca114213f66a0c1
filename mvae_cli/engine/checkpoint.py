"""Checkpoints: model, optimiser, RNG states, step and the resolved recipe, written atomically."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvae_cli.atomic import atomic_path
from mvae_cli.errors import UserError


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file renamed onto ``path``: a crash never leaves half a checkpoint.

    The bytes are written by Python, not by torch's own writer: on a full disk or past a
    file-size limit torch raises a bare RuntimeError, Python an OSError that names the cause.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # Our own files: they carry numpy RNG state and the recipe, so full unpickling is needed.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise UserError(f"checkpoint {path} cannot be read ({type(error).__name__}); it is damaged or not an mvae checkpoint") from None
