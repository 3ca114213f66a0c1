"""The paired-only baseline reads the paired rows of the mask and nothing else; chance by hand."""

import numpy as np
import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.baseline import chance_accuracy, paired_baselines, paired_rows

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 8, 8)), ModalitySpec("label", "categorical", "categorical", (), 4)]


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 4, (n,), generator=g)
    image = torch.rand(n, 1, 8, 8, generator=g) * 0.2
    for c in range(4):  # a bright band per class
        image[label == c, :, 2 * c:2 * c + 2, :] = 0.9
    return {"image": image, "label": label}


def _batches(split, seen=None):
    def batch(rows):
        if seen is not None:
            seen.update(rows.tolist())
        return {name: tensor[rows] for name, tensor in split.items()}
    return batch


def test_the_baseline_learns_from_the_paired_rows_only():
    train, valid, test = _split(1000, 0), _split(200, 1), _split(400, 2)
    mask = np.zeros((1000, 2), dtype=bool)
    mask[:100] = True  # 100 paired rows
    mask[100:550, 0] = True  # image only
    mask[550:, 1] = True  # label only
    # Every unpaired label is wrong: a classifier that read them would score near 0.
    train["label"][100:] = (train["label"][100:] + 1) % 4
    seen = set()
    result = paired_baselines(SPECS, "image", ["label"], mask, _batches(train, seen), _batches(valid), 200,
                              _batches(test), 400, latent_dim=4, hidden=32, image_net="mlp", seed=0, device="cpu")
    assert seen == set(range(100))  # the rows it trained on: exactly the paired ones
    assert result["baseline_rows"] == {"label": 100}
    assert result["baseline"]["label"] >= 0.95
    counts = np.bincount(test["label"].numpy(), minlength=4)
    assert result["chance"]["label"] == pytest.approx(counts.max() / 400)
    assert result["baseline"]["mean"] == result["baseline"]["label"]


def test_paired_rows_and_chance_by_hand():
    mask = np.array([[1, 1], [1, 0], [0, 1], [1, 1]], dtype=bool)
    assert paired_rows(mask, 0, 1).tolist() == [0, 3]
    categorical = ModalitySpec("y", "categorical", "categorical", (), 3)
    assert chance_accuracy(categorical, torch.tensor([0, 2, 2, 1, 2])) == pytest.approx(0.6)
    binary = ModalitySpec("a", "binary", "bernoulli", (2,))
    assert chance_accuracy(binary, torch.tensor([[1, 0], [1, 0], [0, 0], [1, 1]])) == pytest.approx((0.75 + 0.75) / 2)


def test_the_baseline_figures_are_computed_once_per_file_mask_and_settings(tmp_path):
    from mvae_cli.evaluate.baseline import baselines_path, cached_baselines

    data = tmp_path / "d.h5"
    data.write_bytes(b"x" * 10)
    calls = []

    def compute():
        calls.append(1)
        return {"baseline": {"label": 0.5 + len(calls) / 100}, "baseline_rows": {"label": 3}}

    mask = np.array([[True, True], [True, False], [False, True]])
    settings = {"x": "image", "y": ["label"], "seed": 0}
    first = cached_baselines(data, mask, settings, compute)
    assert first == {"baseline": {"label": 0.51}, "baseline_rows": {"label": 3}} and len(calls) == 1
    assert cached_baselines(data, mask.copy(), dict(settings), compute) == first and len(calls) == 1
    # another mask, another setting: computed again; both entries kept
    other = mask.copy()
    other[2, 0] = True
    assert cached_baselines(data, other, settings, compute)["baseline"]["label"] == 0.52
    assert cached_baselines(data, mask, {**settings, "seed": 1}, compute)["baseline"]["label"] == 0.53
    assert cached_baselines(data, other, settings, compute)["baseline"]["label"] == 0.52 and len(calls) == 3
    # a rewritten data file (another size) is another dataset
    data.write_bytes(b"y" * 11)
    assert cached_baselines(data, mask, settings, compute)["baseline"]["label"] == 0.54
    # a damaged cache is recomputed and rewritten, not a crash
    baselines_path(data).write_text("{not json")
    assert cached_baselines(data, mask, settings, compute)["baseline"]["label"] == 0.55
    assert cached_baselines(data, mask, settings, compute)["baseline"]["label"] == 0.55 and len(calls) == 5


def test_a_cache_that_cannot_be_written_costs_only_the_time(tmp_path, monkeypatch):
    from mvae_cli.evaluate import baseline
    from mvae_cli.evaluate.baseline import baselines_path, cached_baselines

    data = tmp_path / "d.h5"
    data.write_bytes(b"x")

    def refuse(path, obj):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(baseline, "write_json", refuse)
    result = cached_baselines(data, np.ones((2, 2), bool), {}, lambda: {"baseline": {"label": 0.9}})
    assert result == {"baseline": {"label": 0.9}} and not baselines_path(data).exists()


def test_evaluations_side_by_side_compute_the_baselines_once(tmp_path):
    """Two evaluations of a sweep's --jobs reaching an empty cache together: the second waits for the
    first's entry instead of training the same classifier again (each opens its own lock, as two
    processes would: flock locks belong to the open file, so two threads contend like processes)."""
    import threading
    import time

    from mvae_cli.evaluate.baseline import cached_baselines

    data = tmp_path / "d.h5"
    data.write_bytes(b"x" * 10)
    calls, results = [], []
    started = threading.Barrier(2)

    def compute():
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to reach the cache meanwhile
        return {"baseline": {"label": 0.5 + len(calls) / 100}, "baseline_rows": {"label": 3}}

    def evaluate():
        started.wait()
        results.append(cached_baselines(data, np.ones((3, 2), bool), {"seed": 0}, compute))

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [{"baseline": {"label": 0.51}, "baseline_rows": {"label": 3}}] * 2


def test_where_no_lock_can_be_taken_the_block_runs_unlocked(tmp_path):
    from mvae_cli.atomic import exclusive_lock

    ran = []
    with exclusive_lock(tmp_path / "no such folder" / "d.h5.baselines.json"):  # the lock file cannot be made
        ran.append(1)
    with exclusive_lock(tmp_path / "d.h5.baselines.json"):
        with exclusive_lock(tmp_path / "other.json"):  # another target's lock does not wait on this one
            ran.append(2)
    assert ran == [1, 2] and (tmp_path / ".d.h5.baselines.json.lock").exists()


def test_a_lock_taken_without_waiting_says_whether_it_is_held(tmp_path):
    from mvae_cli.atomic import exclusive_lock

    target = tmp_path / "d.h5.baselines.json"
    with exclusive_lock(target, wait=False) as held:
        assert held is True
        with exclusive_lock(target, wait=False) as again:  # another open file: as another process sees it
            assert again is False
    with exclusive_lock(tmp_path / "no such folder" / "x.json", wait=False) as unlockable:
        assert unlockable is True  # no lock can be made: the block runs as if it held one


def _tiny_runs(tmp_path, points):
    """A small dataset and one 1-epoch run per ``(supervision, seed)`` of ``points``: (data path, run dirs)."""
    from mvae_cli.engine.loop import train
    from mvae_cli.recipe import resolve_recipe
    from tests.helpers import make_dataset

    data = make_dataset(tmp_path / "d.h5", sizes=(300, 60, 80))
    runs = []
    for level, seed in points:
        run = tmp_path / f"run{level}-{seed}"
        train(resolve_recipe(None, [f"data.path={data}", "epochs=1", "model.hidden=16", "model.latent_dim=3",
                                    f"supervision={level}", f"seed={seed}"]), run)
        runs.append(run)
    return data, runs


def test_a_group_another_process_holds_is_left_for_last(tmp_path, monkeypatch):
    # Two levels, two groups, the larger (150 paired rows) first. Its lock is held (as by a process
    # beside this one): the other group is trained first, then this one waits and trains it once it is free.
    import threading
    import time

    from mvae_cli.eval_config import EvalConfig
    from mvae_cli.evaluate import run_eval
    from mvae_cli.evaluate.baseline import baselines_path

    monkeypatch.chdir(tmp_path)
    data, runs = _tiny_runs(tmp_path, [(0.2, 0), (0.5, 0)])
    order = []
    real = run_eval.paired_baselines_of_runs

    def recording(specs, x, y, masks, *args, **kwargs):
        order.append(int(masks[0].all(axis=1).sum()))  # the group's paired rows: 60 or 150
        return real(specs, x, y, masks, *args, **kwargs)
    monkeypatch.setattr(run_eval, "paired_baselines_of_runs", recording)
    first = {}
    real_lock = run_eval.exclusive_lock

    def lock_spy(target, wait=True):  # note the first group's lock file, to hold it from outside
        first.setdefault("path", target)
        return real_lock(target, wait)
    monkeypatch.setattr(run_eval, "exclusive_lock", lock_spy)
    config = EvalConfig(particles=2, prior_samples=10)
    assert run_eval.precompute_baselines(runs, [config, config]) == 2 and order == [150, 60]  # the largest first
    baselines_path(data).unlink()
    order.clear()
    held, result = real_lock(first["path"]), {}
    held.__enter__()
    worker = threading.Thread(target=lambda: result.setdefault("done", run_eval.precompute_baselines(runs, [config, config])))
    worker.start()
    deadline = time.monotonic() + 60
    while not order and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.join(timeout=0.5)
    assert worker.is_alive() and order == [60]  # the free group trained; the held one waits
    held.__exit__(None, None, None)
    worker.join(timeout=60)
    assert result["done"] == 2 and order == [60, 150]
    # Asked not to wait (a sweep's stack, which evaluates its other runs meanwhile): the held group's
    # runs are handed back, nothing waits.
    baselines_path(data).unlink()
    order.clear()
    left: list = []
    with real_lock(first["path"]):
        assert run_eval.precompute_baselines(runs, [config, config], deferred=left) == 1
    assert order == [60] and left == [runs[1]]  # (0.5, 0): the 150 rows


def test_the_paired_only_classifiers_of_a_stack_are_trained_together_before_its_evaluations(tmp_path, monkeypatch):
    from mvae_cli.eval_config import EvalConfig
    from mvae_cli.evaluate import run_eval
    from mvae_cli.evaluate.baseline import baselines_path
    from mvae_cli.evaluate.run_eval import evaluate_run

    monkeypatch.chdir(tmp_path)
    data, runs = _tiny_runs(tmp_path, [(0.2, 0), (0.2, 1)])
    config = EvalConfig(particles=2, prior_samples=10)
    assert run_eval.precompute_baselines(runs, [config, config]) == 2
    assert run_eval.precompute_baselines(runs, [config, config]) == 0  # cached: nothing to do
    # Another process (a stack of another variant on the same masks) kept them between this one's first
    # look and its lock: it finds them under the lock and trains nothing.
    real_cached, calls = run_eval.cached_baseline, []

    def none_before_the_lock(*args):  # the first look (one call per run) misses; the look under the lock finds them
        calls.append(args)
        return None if len(calls) <= len(runs) else real_cached(*args)
    with monkeypatch.context() as patch:
        patch.setattr(run_eval, "cached_baseline", none_before_the_lock)
        patch.setattr(run_eval, "paired_baselines_of_runs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
        assert run_eval.precompute_baselines(runs, [config, config]) == 0
    assert len(calls) == 2 * len(runs)
    real = run_eval.paired_baselines
    monkeypatch.setattr(run_eval, "paired_baselines", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    together = [evaluate_run(run, config) for run in runs]  # each finds its figures: nothing trained
    monkeypatch.setattr(run_eval, "paired_baselines", real)
    baselines_path(data).unlink()  # each alone, as an evaluation outside a stack computes it
    for run, result in zip(runs, together):
        assert evaluate_run(run, config)["baseline"] == result["baseline"]
        assert result["baseline_rows"] == {"label": 60}
