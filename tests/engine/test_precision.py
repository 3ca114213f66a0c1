"""bf16 autocast on CPU: refused without bf16 instructions, trains and evaluates where present."""

import json
import math

import pytest
import torch

from mvae_cli.engine import device as device_module
from mvae_cli.engine.device import AutocastNetwork, autocast, cpu_bf16_flags
from mvae_cli.engine.loop import train
from mvae_cli.errors import UserError
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset

HAS_BF16 = bool(cpu_bf16_flags())


def test_bf16_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\nflags\t\t: fpu amx_bf16x\n")
    assert cpu_bf16_flags(str(info)) == {"avx512_bf16"}  # amx_bf16x is another flag
    info.write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_bf16_flags(str(info)) == set()
    assert cpu_bf16_flags(str(tmp_path / "missing")) == set()


def test_bf16_on_a_cpu_without_it_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_bf16_flags", lambda: set())
    with pytest.raises(UserError, match="needs a processor with bf16 instructions"):
        autocast(torch.device("cpu"), "bf16")
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        autocast(torch.device("cpu"), "fp16")


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions")
def test_autocast_network_computes_in_bf16_and_returns_fp32():
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    out = AutocastNetwork(net, torch.device("cpu"), "bf16")(x)
    expected = torch.nn.functional.linear(x.bfloat16(), net.weight.bfloat16(), net.bias.bfloat16()).float()
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert not torch.equal(out, net(x))  # bf16 rounding shows


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions")
def test_bf16_trains_and_evaluates_close_to_fp32(tmp_path):
    data = make_dataset(tmp_path / "tiny.h5")
    runs = {}
    for precision in ("fp32", "bf16"):
        recipe = resolve_recipe(None, [f"data.path={data}", "epochs=2", "batch_size=32", "model.hidden=16",
                                       "model.latent_dim=4", "device=cpu", f"precision={precision}"])
        train(recipe, tmp_path / precision)
        runs[precision] = evaluate_run(tmp_path / precision, EvalConfig(particles=20, prior_samples=50, precision=precision))
    fp32, bf16 = (runs[p]["log_pxy"]["image+label"]["mean"] for p in ("fp32", "bf16"))
    assert math.isfinite(bf16) and bf16 != fp32
    assert abs(bf16 - fp32) < 0.02 * abs(fp32)  # bf16 has 8 significant bits; the sums stay fp32
    assert json.loads((tmp_path / "bf16" / "eval.json").read_text())["precision"] == "bf16"
