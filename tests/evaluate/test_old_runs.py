"""eval.json keeps its keys and values: every model's stored tiny run (:mod:`tests.evaluate.old_runs`),
evaluated now, gives what the mvae before the evaluation plan wrote, to 1e-6.

The runs are float32 networks, so a number may move by a few float32 steps of the log weights
(about 40 nats: 2.4e-6) when another CPU kernel computes the same layers; that much is allowed
in absolute terms (1e-5), everything else must agree to a relative 1e-6. The code that wrote the
expectation and the evaluation plan agree bit for bit on the same kernels.
"""

import json
import math

import numpy as np
import pytest

from mvae_cli.eval_config import EvalConfig, stale_settings
from mvae_cli.evaluate.run_eval import evaluate_run
from tests.evaluate.old_runs import CASES, EXPECTED, comparable, install

EXPECTATION = json.loads(EXPECTED.read_text())


def _differences(got, want, path="") -> list[str]:
    """Where ``got`` differs from ``want``: keys and their order, strings, None, booleans exactly;
    numbers to a relative 1e-6 or an absolute 1e-5 (float32 kernels, see the module docstring)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            return [f"{path}: keys {list(got) if isinstance(got, dict) else got!r} != {list(want)}"]
        return [d for key in want for d in _differences(got[key], want[key], f"{path}.{key}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {got!r} != {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        close = math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-5) or (math.isnan(got) and math.isnan(want))
        return [] if close else [f"{path}: {got!r} != {want!r}"]
    return [] if type(got) is type(want) and got == want else [f"{path}: {got!r} != {want!r}"]


def test_the_expectation_covers_every_case():
    assert list(EXPECTATION) == list(CASES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("old_runs")


@pytest.mark.parametrize("case", list(CASES))
def test_an_old_run_evaluates_to_the_eval_json_it_had(case, folder):
    run, settings = CASES[case]
    run_dir = install(run, folder, case)
    config = EvalConfig(**settings)
    result = evaluate_run(run_dir, config, device="cpu")
    written = json.loads((run_dir / "eval.json").read_text())
    assert list(written) == list(result)
    with np.load(run_dir / "eval_examples.npz") as examples:
        got = comparable(written, examples)
    assert _differences(got, EXPECTATION[case]) == []
    # a sweep point evaluated with this config before the change is current, so it is not evaluated again
    stored = {key: value for key, value in EXPECTATION[case].items() if not key.startswith("per_example")}
    assert stale_settings(stored, config) == [] and stale_settings(written, config) == []


def test_the_comparison_sees_a_change():
    want = EXPECTATION["mvae"]
    assert _differences(want, want) == []
    moved = json.loads(json.dumps(want))
    moved["log_px"]["image"]["mean"] *= 1 + 3e-6
    assert _differences(moved, want) == [".log_px.image.mean: " f"{moved['log_px']['image']['mean']!r} != "
                                         f"{want['log_px']['image']['mean']!r}"]
    reordered = {**{k: v for k, v in want.items() if k != "x"}, "x": want["x"]}
    assert _differences(reordered, want) != []
