"""The training bar spans every epoch, so its elapsed and remaining columns keep moving; β's panel title."""

import io

from rich.console import Console
from rich.progress import Progress

from mvae_cli.cli.progress import TrainingDisplay
from mvae_cli.figures.curves import curve_panels


def test_the_bar_counts_steps_over_all_epochs_and_never_finishes_early():
    progress = Progress(console=Console(file=io.StringIO()))
    display = TrainingDisplay(progress)
    display("start", epochs=3, start_epoch=1, steps_per_epoch=4, n_examples=40, device="cpu", resumed=True)
    task = progress.tasks[0]
    assert (task.total, task.completed) == (12, 4)  # resumed after epoch 1
    display("step", epoch=1, step=4, steps=4, loss=1.0, examples_per_s=10.0)  # the end of epoch 2 of 3
    assert task.completed == 8 and not task.finished  # a finished task freezes rich's time columns
    display("step", epoch=2, step=4, steps=4, loss=1.0, examples_per_s=10.0)
    assert task.completed == 12 and task.finished


def test_beta_is_called_annealed_only_when_it_changed():
    flat = [{"epoch": e, "loss": 1.0, "beta": 1.0} for e in (1, 2)]
    rising = [{"epoch": 1, "loss": 1.0, "beta": 0.5}, {"epoch": 2, "loss": 1.0, "beta": 1.0}]
    assert [t for t, _, _ in curve_panels(flat, set()) if t.startswith("β")] == ["β: weight of the KL term (constant, 1)"]
    assert [t for t, _, _ in curve_panels(rising, set()) if t.startswith("β")] == ["β: weight of the KL term (annealed)"]


def test_each_epoch_line_says_how_long_the_rest_will_take(monkeypatch):
    import mvae_cli.cli.progress as progress_module
    from mvae_cli.cli.progress import duration

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    display = TrainingDisplay(Progress(console=Console(file=out, width=200)))
    display("start", epochs=500, start_epoch=100, steps_per_epoch=4, n_examples=40, device="cpu", resumed=True)
    line = {"loss": 1.0, "valid_elbo": -90.0, "beta": 1.0, "seconds": 9.0, "examples_per_s": 5000.0}
    clock[0] += 10.0  # a resumed run: its pace is this invocation's, 10 s per epoch
    display("epoch", epoch=101, **line)
    clock[0] += 10.0
    display("epoch", epoch=102, **line)
    text = out.getvalue().splitlines()
    assert text[-2].endswith("1 h 06 min left") and text[-1].endswith("1 h 06 min left")  # 399, 398 × 10 s
    clock[0] += 10.0 * 398
    display("epoch", epoch=500, **line)
    assert out.getvalue().splitlines()[-1].endswith("ex/s")  # nothing left to say
    assert [duration(s) for s in (44.6, 60, 1620, 3900)] == ["45 s", "1 min", "27 min", "1 h 05 min"]
