"""The CLI sets OpenMP's passive waiting before torch loads, and leaves a user's choice alone."""

import os
import subprocess
import sys

import pytest

SHOW = "import os, sys; import mvae_cli.cli.app; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE False"), ("ACTIVE", "ACTIVE False")])
def test_cli_chooses_passive_waiting_before_torch_loads(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.getcwd()
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_configure_threads_does_nothing_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401  (loaded, as in this test process)

    from mvae_cli.engine.threads import configure_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    configure_threads()
    assert "OMP_WAIT_POLICY" not in os.environ
