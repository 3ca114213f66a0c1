"""The token vocabulary of MultiMNIST's text modality (kind ``sequence``).

Digits 0-9 are token ids 0-9, ``START`` is 10 and ``STOP`` is 11. A text of n digits
(n = 0..4) is the row ``[START, d1, ..., dn, STOP]`` padded with ``STOP`` to
``MAX_LEN`` = 6 tokens, stored as ``uint8 [N, 6]``; its length ``n + 2`` (counting
``START`` and ``STOP``) is stored beside it as ``uint8 [N]`` in ``<name>_length``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

START = 10
STOP = 11
PAD = STOP
VOCAB = 12
MAX_DIGITS = 4
MAX_LEN = MAX_DIGITS + 2


def encode_text(digits: str | Iterable[int]) -> np.ndarray:
    """The token row of a digit string.

    Args:
        digits: up to 4 digits, as a string (``"307"``) or integers (``[3, 0, 7]``).

    Returns:
        ``uint8 [MAX_LEN]``: ``[START, d1, ..., dn, STOP, PAD, ...]``.

    Raises:
        ValueError: more than 4 digits, or an item that is not a digit 0-9.
    """
    if isinstance(digits, str):
        if not all(c in "0123456789" for c in digits):
            raise ValueError(f"digits must be 0-9, got {digits!r}")
        values = [int(c) for c in digits]
    else:
        values = list(digits)
    if len(values) > MAX_DIGITS:
        raise ValueError(f"a text holds at most {MAX_DIGITS} digits, got {len(values)}")
    if any(int(v) != v or not 0 <= v <= 9 for v in values):
        raise ValueError(f"digits must be 0-9, got {values}")
    row = np.full(MAX_LEN, PAD, dtype=np.uint8)
    row[0] = START
    row[1:1 + len(values)] = values
    return row


def encode_batch(texts: Iterable[str | Iterable[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Encode several texts: ``(tokens uint8 [N, MAX_LEN], lengths uint8 [N])``."""
    rows = [encode_text(t) for t in texts]
    tokens = np.stack(rows) if rows else np.empty((0, MAX_LEN), np.uint8)
    return tokens, token_lengths(tokens)


def token_lengths(ids: np.ndarray, stop: int = STOP) -> np.ndarray:
    """The length of each row, up to and including its first ``stop`` after position 0
    (the full width ``L`` without one).

    Args:
        ids: ``int [N, L]``.
        stop: the STOP id (11 here; ``vocab - 1`` for any sequence modality).

    Returns:
        ``uint8 [N]`` (``uint16`` when ``L`` > 255); for rows written by
        :func:`encode_text`, the number of digits + 2.
    """
    ids = np.asarray(ids)
    is_stop = ids[:, 1:] == stop  # position 0 is START
    first = np.where(is_stop.any(axis=1), is_stop.argmax(axis=1) + 2, ids.shape[1])
    return first.astype(np.uint8 if ids.shape[1] <= 255 else np.uint16)


def decode_tokens(ids) -> str | list[str]:
    """The digit string of one token row, or a list of them for ``[N, L]``.

    Decoding is forgiving, for sampled rows: a leading ``START`` is skipped, reading
    stops at the first ``STOP``, and any other ``START`` is ignored.

    Args:
        ids: ``int [L]`` or ``int [N, L]`` token ids in ``[0, VOCAB)``.
    """
    ids = np.asarray(ids)
    if ids.ndim == 2:
        return [decode_tokens(row) for row in ids]
    out = []
    for token in ids.tolist():
        if token == STOP:
            break
        if token < 10:
            out.append(str(token))
    return "".join(out)
