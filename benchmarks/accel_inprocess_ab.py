"""The CPU speed-up layer against the code before it (7d8ffa5), in ONE process, alternated.

The whole-run comparison (``accel_ab.sh``) cannot resolve a few percent on a shared machine; this
one runs the same work with the old and the new code on the same tensors, old and new in turn,
and compares medians: a training step of the paper's MNIST MVAE (the old ``model.linear.Linear``
against ``accel.linear.prepare``'s layer; also checked to give the same weights bit for bit), the
fused eval scorers of both modalities on a 4,096-particle chunk, the estimator's log weights, and
the label's prior predictive. The old linear layer and scorers are loaded from the source files of
a tree of the old code (a worktree of 7d8ffa5). Run from this checkout, after the change:

    git worktree add /tmp/accel-before 7d8ffa5
    PYTHONPATH=. python benchmarks/accel_inprocess_ab.py /tmp/accel-before [train|eval|all]
"""

import statistics
import sys
import time
import types

from mvae_cli import accel

accel.enable()  # as the CLI's main() does, before torch loads

import torch  # noqa: E402
from torch import nn  # noqa: E402

BEFORE = sys.argv[1].rstrip("/") + "/mvae_cli"

def load(name: str, path: str, patch: list[tuple[str, str]]) -> types.ModuleType:
    """The module at ``path``, its source patched, under ``name``."""
    src = open(path).read()
    for a, b in patch:
        assert a in src, a
        src = src.replace(a, b)
    mod = types.ModuleType(name)
    mod.__file__ = path
    sys.modules[name] = mod
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod

old_linear = load("old_linear", f"{BEFORE}/model/linear.py", [])
old_scorers = load("old_scorers", f"{BEFORE}/evaluate/scorers.py",
                   [("from mvae_cli.model.linear import cpu_linear_backend", "from old_linear import cpu_linear_backend")])

from mvae_cli.accel.linear import cpu_linear_backend  # noqa: E402
from mvae_cli.data.format import ModalitySpec
from mvae_cli.engine.run import build_model
from mvae_cli.evaluate import scorers as new_scorers
from mvae_cli.evaluate.estimator import log_importance_weights, log_prior_predictive
from mvae_cli.recipe import resolve_recipe
from mvae_cli.zoo import objective as make_objective

torch.manual_seed(0)
specs = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)), ModalitySpec("label", "categorical", "categorical", (), 10)]
recipe = resolve_recipe(None, ["model.hidden=512", "model.latent_dim=64"])

def models():
    torch.manual_seed(0)
    new = build_model(recipe, specs)  # prepared: OneDNNLinear where the kernel is oneDNN
    torch.manual_seed(0)
    old = build_model(recipe, specs)
    for m in old.modules():
        if isinstance(m, nn.Linear):
            m.__class__ = old_linear.Linear  # the layer before: the kernel asked at every call
    return old, new

def alternate(fns, rounds, inner=1):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: statistics.median(v) for k, v in times.items()}

what = sys.argv[2] if len(sys.argv) > 2 else "all"
print(f"CPU linear kernel {cpu_linear_backend()} (capability {torch.backends.cpu.get_cpu_capability()}), "
      f"torch threads {torch.get_num_threads()}, load average {open('/proc/loadavg').read().split()[:3]}")

if what in ("all", "train"):
    old, new = models()
    batch = {"image": torch.rand(100, 1, 28, 28).round(), "label": torch.randint(0, 10, (100,)),
             "mask": torch.ones(100, 2, dtype=torch.bool)}
    opts = {"old": torch.optim.Adam(old.parameters(), lr=1e-3, fused=True),
            "new": torch.optim.Adam(new.parameters(), lr=1e-3, fused=True)}
    objective = make_objective("mvae", k=0)
    def step(name, model):
        def run():
            opts[name].zero_grad(set_to_none=True)
            objective(model, batch, 0)[0].backward()
            opts[name].step()
        return run
    fns = {"old": step("old", old), "new": step("new", new)}
    alternate(fns, 3, 5)
    med = alternate(fns, 30, 10)
    print(f"train step (batch 100): old {med['old'] * 1e3:.2f} ms, new {med['new'] * 1e3:.2f} ms, new/old {med['new'] / med['old']:.3f}")
    old, new = models()
    opts = {"old": torch.optim.Adam(old.parameters(), lr=1e-3, fused=True),
            "new": torch.optim.Adam(new.parameters(), lr=1e-3, fused=True)}
    for i in range(5):  # the same noise for both: the objective draws from torch's global generator
        torch.manual_seed(i); step("old", old)()
        torch.manual_seed(i); step("new", new)()
    same = all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))
    print("weights after the same steps identical:", same)

if what in ("all", "eval"):
    old, new = models()
    old.eval(); new.eval()
    rows = 4096
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 1024, 64, generator=g)
    x = {"image": torch.rand(4, 1, 28, 28, generator=g).round(), "label": torch.tensor([1, 2, 3, 4])}
    for name in ("image", "label", "label", "image"):
        so = old_scorers.fused_scorer(old, name, rows)
        sn = new_scorers.fused_scorer(new, name, rows)
        assert so is not None and sn is not None
        torch.testing.assert_close(sn(z, x[name]), so(z, x[name]), rtol=1e-5, atol=1e-3)
        with torch.inference_mode():
            alternate({"old": lambda: so(z, x[name]), "new": lambda: sn(z, x[name])}, 3)
            med = alternate({"old": lambda: so(z, x[name]), "new": lambda: sn(z, x[name])}, 80)
        print(f"fused scorer {name}, chunk of {rows}: old {med['old'] * 1e3:.2f} ms, new {med['new'] * 1e3:.2f} ms, "
              f"new/old {med['new'] / med['old']:.3f}")
    batch = {"image": torch.rand(16, 1, 28, 28, generator=g).round(), "label": torch.randint(0, 10, (16,), generator=g)}
    props = [["image"], ["image", "label"], ["label"]]
    targets = [["image"], ["image", "label"]]
    sc = {"old": old_scorers.scorers(old, ["image", "label"], "cpu", rows), "new": new_scorers.scorers(new, ["image", "label"], "cpu", rows)}
    assert all(s.fused for d in sc.values() for s in d.values())
    def lw(name, model):
        return lambda: log_importance_weights(model, batch, props, targets, 1000, seed=0, chunk_rows=rows, scorers=sc[name])
    torch.testing.assert_close(lw("new", new)(), lw("old", old)(), rtol=1e-5, atol=1e-2)
    med = alternate({"old": lw("old", old), "new": lw("new", new)}, 12)
    print(f"importance weights, 16 images x 1000 particles x 3 proposals: old {med['old']:.3f} s, new {med['new']:.3f} s, "
          f"new/old {med['new'] / med['old']:.3f}")
    zp = torch.randn(5000, 64, generator=g)
    big = {"label": torch.randint(0, 10, (262,), generator=g)}
    # the prior predictive: before, scorers.shared_log_prob's log_softmax form; after, the likelihood's
    def pp_old():
        with torch.inference_mode():
            out = zp.new_zeros(262, 5000)
            for s0 in range(0, 5000, rows):
                out[:, s0:s0 + rows] += old_scorers.shared_log_prob(old, "label", old.decode("label", zp[s0:s0 + rows]), big["label"])
            return out
    pp_new = lambda: log_prior_predictive(new, big, ["label"], zp, chunk_rows=rows)
    torch.testing.assert_close(pp_new(), pp_old(), rtol=1e-5, atol=1e-4)
    med = alternate({"old": pp_old, "new": pp_new}, 20)
    print(f"prior predictive of the label, 262 examples x 5000 samples: old {med['old'] * 1e3:.1f} ms, "
          f"new {med['new'] * 1e3:.1f} ms, new/old {med['new'] / med['old']:.3f}")
