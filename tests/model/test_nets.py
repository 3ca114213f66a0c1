import math

import pytest
import torch
import torch.nn.functional as F

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.nets import ConvDecoder, ConvEncoder
from mvae_cli.model.sequence import SequenceDecoder, SequenceEncoder, sequence_lengths

START, STOP = 10, 11


def test_mnist_inference_networks_have_the_papers_parameter_count():
    # MVAE paper, Table 1: 1,063,680 inference-network parameters for MNIST with z = 64.
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)), ModalitySpec("label", "categorical", "categorical", (), 10)]
    model = MultimodalVAE(specs, latent_dim=64, hidden=512)
    assert sum(p.numel() for p in model.encoders.parameters()) == 1_063_680
    assert sum(p.numel() for p in model.encoders["image"].parameters()) == 730_240  # the VAE column


@pytest.mark.parametrize("shape,layers", [((1, 28, 28), 2), ((3, 32, 32), 2), ((1, 50, 50), 4), ((3, 64, 64), 4), ((1, 50, 50), 2)])
def test_conv_decoder_restores_the_image_size(shape, layers):
    enc, dec = ConvEncoder(shape, 8, 32, layers), ConvDecoder(shape, 8, 32, layers)
    mu, logvar = enc(torch.rand(3, *shape))
    assert mu.shape == (3, 8) and logvar.shape == (3, 8)
    assert dec(mu).shape == (3, *shape)


def test_sequence_lengths_count_start_to_first_stop():
    tokens = torch.tensor([[START, 3, 1, STOP, STOP, STOP], [START, STOP, STOP, STOP, STOP, STOP], [START, 1, 2, 3, 4, STOP]])
    assert sequence_lengths(tokens, STOP).tolist() == [4, 2, 6]


def test_sequence_log_prob_is_the_teacher_forced_sum_over_tokens_to_stop():
    torch.manual_seed(0)
    dec = SequenceDecoder(12, 6, latent_dim=4, hidden=16)
    tokens = torch.tensor([[START, 7, 2, STOP, STOP, STOP], [START, STOP, STOP, STOP, STOP, STOP]])
    state = dec(torch.randn(2, 4))
    got = dec.log_prob(state, tokens)
    for r in range(2):  # step the GRU by hand, one token at a time
        h = state[r:r + 1].transpose(0, 1).contiguous()
        total, t = 0.0, 0
        while True:
            out, h = dec.gru(F.silu(dec.inp(dec.embed(tokens[r:r + 1, t:t + 1]))), h)
            total += torch.log_softmax(dec.out(out[0, 0]), -1)[tokens[r, t + 1]].item()
            t += 1
            if tokens[r, t] == STOP:
                break
        assert math.isclose(got[r].item(), total, rel_tol=1e-5)


def test_sequence_decoder_learns_to_generate_a_string():
    torch.manual_seed(0)
    dec = SequenceDecoder(12, 6, latent_dim=2, hidden=32)
    target = torch.tensor([[START, 4, 0, 9, STOP, STOP]])
    z = torch.zeros(1, 2)
    opt = torch.optim.Adam(dec.parameters(), 1e-2)
    for _ in range(150):
        loss = -dec.log_prob(dec(z), target).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert dec.generate(dec(z)).tolist() == target.tolist()


def test_sequence_encoder_ignores_padding_after_stop():
    torch.manual_seed(0)
    enc = SequenceEncoder(12, 4)
    a = torch.tensor([[START, 5, STOP, STOP, STOP, STOP]])
    b = torch.tensor([[START, 5, STOP, 3, 3, 3]])  # garbage after STOP must not matter
    torch.testing.assert_close(enc(a)[0], enc(b)[0])


def test_batches_where_a_modality_is_shown_once_or_never_still_train():
    from mvae_cli.objectives import MVAEObjective

    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("smiling", "binary", "bernoulli", (1,)),
             ModalitySpec("bald", "binary", "bernoulli", (1,))]
    torch.manual_seed(0)
    model = MultimodalVAE(specs, latent_dim=3, hidden=8)
    batch = {"image": torch.rand(4, 1, 4, 4), "smiling": torch.ones(4, 1), "bald": torch.zeros(4, 1),
             "mask": torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)}
    loss, _ = MVAEObjective(k=1)(model, batch, 0)  # "smiling" on one row, "bald" on none
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.encoders["bald"].parameters())
    bn = model.encoders["smiling"].net[2]
    assert torch.equal(bn.running_mean, torch.zeros(8))  # the single row used, and left, the running statistics


def test_the_label_encoder_runs_once_per_class_with_the_values_and_gradients_of_one_row_per_example():
    from mvae_cli.model.nets import CategoricalEncoder

    torch.manual_seed(4)
    encoder = CategoricalEncoder(classes=10, latent_dim=6, hidden=32)
    ids = torch.randint(0, 10, (100,))
    rows = []

    def count(module, inputs, output):
        rows.append(inputs[0].shape[0])

    handle = encoder.net[1].register_forward_hook(count)
    mu, logvar = encoder(ids)
    handle.remove()
    assert rows == [10]  # the classes' table, not the batch
    per_example = encoder.net(encoder.embed(ids))  # the network on every example's own row
    torch.testing.assert_close(torch.cat([mu, logvar], dim=1), per_example, rtol=1e-6, atol=1e-6)
    weights = torch.randn(100, 12)
    got = torch.autograd.grad((torch.cat([mu, logvar], dim=1) * weights).sum(), list(encoder.parameters()))
    want = torch.autograd.grad((per_example * weights).sum(), list(encoder.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    few = encoder(ids[:4])  # a batch smaller than the table runs row by row, the same values
    torch.testing.assert_close(torch.cat(few, dim=1), per_example[:4], rtol=1e-6, atol=1e-6)
