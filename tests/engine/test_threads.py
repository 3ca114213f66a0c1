"""The CLI bounds OpenMP's spinning before torch loads, and leaves a user's choice alone."""

import os
import subprocess
import sys

import pytest

SHOW = ("import os, sys; import mvae_cli.cli.app; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")


@pytest.mark.parametrize("given, expected", [
    ({}, "None 500 False"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None False"),  # the user's policy, with its own spin count
    ({"GOMP_SPINCOUNT": "20000"}, "None 20000 False"),
])
def test_cli_bounds_spinning_before_torch_loads(given, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", SHOW], env={**env, **given}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_configure_threads_does_nothing_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401  (loaded, as in this test process)

    from mvae_cli.engine.threads import configure_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    configure_threads()
    assert "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
