"""Text networks for sequence modalities (MVAE paper §4.3, MultiMNIST).

Token rows are ``[START, t1, …, tn, STOP, STOP…]``; by contract START and STOP are the last
two ids of the vocabulary (10 and 11 for the 12-symbol digit vocabulary).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def sequence_lengths(tokens: torch.Tensor, stop: int) -> torch.Tensor:
    """Tokens up to and including the first STOP: ``long[R]`` (the full width when none)."""
    is_stop = tokens == stop
    first = torch.where(is_stop.any(dim=1), is_stop.float().argmax(dim=1), torch.full_like(tokens[:, 0], tokens.shape[1] - 1))
    return first.long() + 1


class SequenceEncoder(nn.Module):
    """Embedding of size 10 → bidirectional GRU (200 units) → linear to (mu, logvar)."""

    def __init__(self, vocab: int, latent_dim: int, embed: int = 10, hidden: int = 200):
        super().__init__()
        self.stop = vocab - 1
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2 * latent_dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = tokens.long()
        lengths = sequence_lengths(tokens, self.stop).cpu()
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # [2, R, hidden]: final forward and backward states
        return self.out(torch.cat([h[0], h[1]], dim=-1)).chunk(2, dim=-1)


class SequenceDecoder(nn.Module):
    """z → initial state of a two-layer GRU; each step embeds the previous token, passes it
    through a fully connected layer and the GRU, then a fully connected layer gives logits
    over the vocabulary. ``forward`` returns the initial state (the likelihood's parameters);
    :meth:`log_prob` is the teacher-forced categorical likelihood per token."""

    def __init__(self, vocab: int, max_len: int, latent_dim: int, embed: int = 10, hidden: int = 200, layers: int = 2):
        super().__init__()
        self.vocab, self.max_len, self.layers, self.hidden = vocab, max_len, layers, hidden
        self.start, self.stop = vocab - 2, vocab - 1
        self.init = nn.Linear(latent_dim, layers * hidden)
        self.embed = nn.Embedding(vocab, embed)
        self.inp = nn.Linear(embed, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Initial GRU state, batch first: ``[R, layers, hidden]``."""
        return torch.tanh(self.init(z)).view(-1, self.layers, self.hidden)

    def _logits(self, state: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = state.transpose(0, 1).contiguous()
        out, h = self.gru(F.silu(self.inp(self.embed(inputs))), h0)
        return self.out(out), h.transpose(0, 1)

    def log_prob(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log p(tokens | z): the sum over t1 … STOP of log softmax, teacher forced: ``[R]``."""
        tokens = tokens.long()
        logits, _ = self._logits(state, tokens[:, :-1])
        ll = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
        steps = torch.arange(tokens.shape[1] - 1, device=tokens.device)
        valid = steps.unsqueeze(0) < (sequence_lengths(tokens, self.stop) - 1).unsqueeze(1)
        return (ll * valid).sum(dim=1)

    @torch.no_grad()
    def generate(self, state: torch.Tensor) -> torch.Tensor:
        """Greedy decoding from START until STOP: ``long[R, max_len]`` padded with STOP."""
        rows = state.shape[0]
        tokens = torch.full((rows, self.max_len), self.stop, dtype=torch.long, device=state.device)
        tokens[:, 0] = self.start
        done = torch.zeros(rows, dtype=torch.bool, device=state.device)
        previous = tokens[:, :1]
        for t in range(1, self.max_len):
            logits, state = self._logits(state, previous)
            step = logits[:, -1].argmax(dim=-1)
            step = torch.where(done, torch.full_like(step, self.stop), step)
            tokens[:, t] = step
            done |= step == self.stop
            previous = step.unsqueeze(1)
            if bool(done.all()):
                break
        return tokens
