"""The layer is opt-in: importing the CLI changes nothing process-wide; ``main()`` bounds OpenMP's
spinning before torch loads; a user's choice is left alone."""

import json
import os
import subprocess
import sys

import pytest

from mvae_cli.accel.threads import configure_threads

SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MVAE_ACCEL", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

# What `import mvae_cli.cli.app` and then `accel.enable()` change, in a fresh process: the
# environment, whether glibc serves a block of 4, then 8, then 16 MB from mmap (by default it does:
# its threshold only rises to the size of the last mmapped block freed; raised, it does not),
# whether torch is loaded, and what a process started afterwards sees.
PROBE = r"""
import ctypes, json, os, subprocess, sys

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
info = getattr(libc, "mallinfo2", None)
if info is not None:
    info.restype = Info

def mmapped(size):
    if info is None:
        return None
    before = info().hblks
    block = libc.malloc(size)
    grew = info().hblks > before
    libc.free(block)
    return grew

def state(size):
    child = subprocess.run([sys.executable, "-c", "from mvae_cli import accel; print(accel.enabled())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"env": {k: os.environ.get(k) for k in NAMES}, "mmapped": mmapped(size), "torch": "torch" in sys.modules,
            "child_enabled": child}

NAMES = json.loads(sys.argv[1])
out = {"fresh": state(4 << 20)}
import mvae_cli.cli.app
out["imported"] = state(8 << 20)
from mvae_cli import accel
out["enable"] = accel.enable()
out["enabled"] = state(16 << 20)
print(json.dumps(out))
"""


def _probe(**given) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(SETTINGS)], env={**env, **given},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_changes_no_process_setting_and_enable_changes_them_for_children_too():
    out = _probe()
    assert out["imported"] == out["fresh"]  # no variable set, glibc's thresholds as they were, no torch
    assert not out["fresh"]["torch"] and out["fresh"]["child_enabled"] == "False"
    assert out["enable"] is True
    env = out["enabled"]["env"]
    assert env["GOMP_SPINCOUNT"] == "500" and env["MVAE_ACCEL"] == "1" and env["OMP_WAIT_POLICY"] is None
    if sys.platform.startswith("linux"):
        assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20) and env["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)
    if out["fresh"]["mmapped"] is not None and env["MALLOC_MMAP_THRESHOLD_"] is not None:
        assert out["fresh"]["mmapped"] and not out["enabled"]["mmapped"]  # mallopt took effect in this process
    assert not out["enabled"]["torch"]  # enable() itself imports no torch: it can run before it
    assert out["enabled"]["child_enabled"] == "True"  # sweep workers and ranks inherit the layer


def test_mvae_accel_0_keeps_the_whole_layer_off():
    out = _probe(MVAE_ACCEL="0")
    assert out["enable"] is False
    assert out["enabled"] == out["fresh"] and out["enabled"]["child_enabled"] == "False"


# main() with the Typer app replaced by a probe: what a command sees when it starts.
MAIN = ("import os, sys; from mvae_cli.cli import app; "
        "app.app = lambda: print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
        "'torch' in sys.modules); app.main()")


@pytest.mark.parametrize("given, expected", [
    ({}, "None 500 False"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None False"),  # the user's policy, with its own spin count
    ({"GOMP_SPINCOUNT": "20000"}, "None 20000 False"),
])
def test_main_bounds_spinning_before_torch_loads(given, expected):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", MAIN], env={**env, **given}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_configure_threads_does_nothing_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401  (loaded, as in this test process)

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert configure_threads() is False
    assert "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
