"""The MultiMNIST token vocabulary: encoding, decoding, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from mvae_cli.data import text


def test_constants():
    assert (text.START, text.STOP, text.PAD, text.VOCAB, text.MAX_LEN) == (10, 11, 11, 12, 6)


@pytest.mark.parametrize("digits, row", [
    ("", [10, 11, 11, 11, 11, 11]),
    ("7", [10, 7, 11, 11, 11, 11]),
    ("307", [10, 3, 0, 7, 11, 11]),
    ([9, 0, 0, 1], [10, 9, 0, 0, 1, 11]),
])
def test_encode_decode(digits, row):
    encoded = text.encode_text(digits)
    assert encoded.dtype == np.uint8 and encoded.tolist() == row
    as_string = digits if isinstance(digits, str) else "".join(map(str, digits))
    assert text.decode_tokens(encoded) == as_string
    assert text.token_lengths(encoded[None]).tolist() == [len(as_string) + 2]


def test_batches():
    tokens, lengths = text.encode_batch(["", "12", "3456"])
    assert tokens.shape == (3, 6) and lengths.tolist() == [2, 4, 6]
    assert text.decode_tokens(tokens) == ["", "12", "3456"]


def test_decoding_is_forgiving():
    # No START, a stray START, digits after STOP: read digits up to the first STOP.
    assert text.decode_tokens([4, 10, 2, 11, 5, 5]) == "42"
    assert text.decode_tokens([10, 1, 2, 3, 4, 5]) == "12345"
    assert text.token_lengths(np.array([[10, 1, 2, 3, 4, 5]])).tolist() == [6]


@pytest.mark.parametrize("bad", ["12345", "1a", [10], [-1]])
def test_bad_texts(bad):
    with pytest.raises(ValueError):
        text.encode_text(bad)
