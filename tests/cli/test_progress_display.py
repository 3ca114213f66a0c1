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


def _line(**extra):
    return {"loss": 1.0, "valid_elbo": -90.0, "beta": 1.0, "seconds": 9.0, "examples_per_s": 5000.0, **extra}


def test_beta_is_shown_while_it_changes_and_the_epoch_line_fits_80_columns():
    out = io.StringIO()
    display = TrainingDisplay(Progress(console=Console(file=out, width=80)))
    display("start", epochs=500, start_epoch=0, steps_per_epoch=4, n_examples=40, device="cpu", resumed=False)
    for epoch, beta in ((1, 0.5), (2, 1.0), (3, 1.0)):
        display("epoch", epoch=epoch, **_line(beta=beta, loss=12345.678, valid_elbo=-12345.678,
                                               examples_per_s=123456.0))
    lines = out.getvalue().splitlines()[1:]
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)  # one line each, however long the numbers
    assert ["β 0.50" in lines[0], "β 1.00" in lines[1], "β" in lines[2]] == [True, True, False]
    assert lines[0].startswith("epoch 1/500  loss 12345.7  valid ELBO -12345.7  β 0.50  9.0 s  ")
    assert lines[0].endswith(" s left") and "ex/s" not in lines[0]  # the speed gave way
    assert lines[2].startswith("epoch 3/500  loss 12345.7  valid ELBO -12345.7  9.0 s  123,456 ex/s  ")


def test_an_evaluation_logs_each_part_as_it_starts_when_no_bar_shows():
    from mvae_cli.cli.progress import EvalDisplay

    out = io.StringIO()
    display = EvalDisplay(Progress(console=Console(file=out, width=80)))  # a file: no live bar
    display.examples(0, 2000)
    display.examples(2000, 2000)
    display.stage("paired-only classifier")
    display.stage("coherence and the latent probe")
    display.close()
    parts = [line.split(" s  ", 1)[1] for line in out.getvalue().splitlines()]
    assert parts == ["likelihoods of 2,000 examples", "paired-only classifier", "coherence and the latent probe",
                     "done"]
    terminal = io.StringIO()
    progress = Progress(console=Console(file=terminal, width=80, force_terminal=True))
    display = EvalDisplay(progress)
    display.stage("paired-only classifier")  # on a terminal the bar's description says it instead
    assert progress.tasks[0].description == "paired-only classifier" and "s  paired-only" not in terminal.getvalue()


def test_a_sweep_logged_to_a_file_has_a_line_per_epoch_and_per_part_of_the_evaluation():
    from mvae_cli.cli.progress import plural
    from mvae_cli.cli.sweep import SweepDisplay

    out = io.StringIO()
    display = SweepDisplay(Progress(console=Console(file=out, width=80)), total=1)
    display("point", point="f=0.1", index=1, total=1, reused=False)
    display("start", point="f=0.1", epochs=2, start_epoch=0, steps_per_epoch=3, n_examples=300, resumed=False)
    display("step", point="f=0.1", epoch=0, step=3, steps=3, loss=1.0, examples_per_s=10.0)
    display("epoch", point="f=0.1", epoch=1, **_line())
    display("evaluate", point="f=0.1", done=0, total=100)
    display("evaluate", point="f=0.1", stage="paired-only classifier")
    display("done", point="f=0.1", status="finished", error=None)
    assert out.getvalue().splitlines() == [
        "f=0.1  training on 300 examples", "f=0.1  epoch 1/2  loss 1.0  valid ELBO -90.0  9.0 s",
        "f=0.1  evaluating: likelihoods of 100 examples", "f=0.1  evaluating: paired-only classifier", "✓ f=0.1"]
    assert [plural(n, "point") for n in (0, 1, 3)] == ["0 points", "1 point", "3 points"]
