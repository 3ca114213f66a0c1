"""glibc keeps a training step's freed tensors for the next step: no page faults per step."""

import os
import statistics
import subprocess
import sys

import pytest

from mvae_cli.accel import allocator

NAMES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

# Training steps of the paper's MNIST MVAE in a fresh process; prints the page faults of each step.
# Both set the process up as the CLI's main() does; "glibc" keeps glibc's default thresholds.
STEPS = """
import resource, sys
from mvae_cli import accel
accel.enable(allocator=sys.argv[1] == "mvae")
import torch
from mvae_cli.data.format import ModalitySpec
from mvae_cli.engine.run import build_model
from mvae_cli.zoo import objective as make_objective
from mvae_cli.recipe import resolve_recipe
torch.manual_seed(0); torch.set_num_threads(1)
specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)), ModalitySpec("label", "categorical", "categorical", (), 10)]
model = build_model(resolve_recipe(None, ["model.hidden=512", "model.latent_dim=64"]), specs)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
objective = make_objective("mvae", k=0)
batch = {"image": torch.rand(100, 1, 28, 28).round(), "label": torch.randint(0, 10, (100,)),
         "mask": torch.ones(100, 2, dtype=torch.bool)}
def step(i):
    optimizer.zero_grad(set_to_none=True)
    objective(model, batch, i)[0].backward()
    optimizer.step()
for i in range(5):
    step(i)
faults = []
for i in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(i)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults_per_step(setup: str) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in (*NAMES, "MVAE_ACCEL")}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", STEPS, setup], env=env, capture_output=True, text=True, check=True)
    return [int(n) for n in out.stdout.strip().splitlines()[-1].split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_cli_process_takes_no_page_faults_per_training_step():
    default, mvae = statistics.median(_faults_per_step("glibc")), _faults_per_step("mvae")
    if default < 100:
        pytest.skip(f"this libc does not fault per step by default ({default:.0f} a step): nothing to remove")
    # A typical step faults nothing; now and then the heap grows once by a megabyte (256 pages) as
    # fragmentation settles, which is not a per-step cost, so the median carries the claim and the
    # mean only bounds those one-off growths.
    assert statistics.median(mvae) < 0.05 * default, (mvae, default)
    assert statistics.mean(mvae) < 0.5 * default, (mvae, default)


def _clean_environ(monkeypatch, **given):
    environ = {k: v for k, v in os.environ.items() if k not in NAMES}
    monkeypatch.setattr(os, "environ", {**environ, **given})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_thresholds_reach_processes_started_later(monkeypatch):
    _clean_environ(monkeypatch)
    if not allocator.configure_allocator():
        pytest.skip("not glibc")
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)


@pytest.mark.parametrize("given", [{"MALLOC_MMAP_THRESHOLD_": "65536"}, {"MALLOC_TOP_PAD_": "0"},
                                   {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_a_users_allocator_settings_are_left_alone(monkeypatch, given):
    _clean_environ(monkeypatch, **given)
    assert allocator.configure_allocator() is False
    assert {k: v for k, v in os.environ.items() if k in NAMES} == given


def test_nothing_happens_off_linux(monkeypatch):
    _clean_environ(monkeypatch)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.configure_allocator() is False
    assert not any(k in os.environ for k in NAMES)
