from mvae_cli.evaluate.collapse import accuracy_warnings, latent_warnings


def test_an_inactive_latent_is_named_with_its_remedies():
    (line,) = latent_warnings("q(z | image)", active=0, latent_dim=16, kl=0.001)
    assert "q(z | image) has 0 of 16 active units" in line and "KL 0.001" in line
    assert "beta=0.5" in line and "free_bits" in line and "model.weights" in line
    assert latent_warnings("q(z | image)", active=3, latent_dim=16, kl=0.05)  # KL ≈ 0 alone is collapse too
    assert latent_warnings("q(z | image)", active=3, latent_dim=16, kl=12.0) == []


def test_accuracy_at_chance_and_below_the_baseline_are_reported():
    accuracy = {"digit": 0.11, "shape": 0.70, "colour": 0.95, "mean": 0.59, "attributes/Bald": 0.5}
    chance = {"digit": 0.10, "shape": 0.34, "colour": 0.26}
    baseline = {"digit": 0.75, "shape": 0.90, "colour": 0.96}
    lines = accuracy_warnings(accuracy, chance, baseline, x="image")
    assert len(lines) == 2
    assert lines[0].startswith("digit is predicted from image at chance (0.110; chance 0.100)")
    assert lines[1].startswith("shape is predicted from image worse (0.700) than by a classifier trained on the paired")
    assert accuracy_warnings({"colour": 0.95}, chance) == []


def test_the_sweep_summary_warns_per_grid_point_on_means_over_seeds():
    import io

    from rich.console import Console

    from mvae_cli.cli.sweep import _print_warnings

    rows = [{"point": f"supervision={f},seed={s}", "supervision": f, "seed": s,
             "accuracy.label": acc + 0.01 * s, "chance.label": 0.11, "baseline.label": base}
            for f, acc, base in ((0.02, 0.10, 0.45), (1.0, 0.76, 0.89)) for s in (0, 1, 2)]
    out = io.StringIO()
    _print_warnings(rows, ["supervision", "seed"], Console(file=out, width=400))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # a line per warning, then the remedies once
    assert "(supervision=0.02, mean over seeds): label is predicted from x at chance (0.110; chance 0.110)" in lines[0]
    assert "(supervision=1.0, mean over seeds): label is predicted from x worse (0.770)" in lines[1]
    assert lines[2].startswith("for the warnings above, remedies:")


def test_a_code_that_carries_the_class_at_chance_is_called_unaligned_not_collapsed():
    from mvae_cli.evaluate.collapse import REMEDIES

    chance = {"label": 0.117}
    (line,) = accuracy_warnings({"label": 0.11}, chance, {"label": 0.84}, x="image", probe={"image": 0.853},
                                probed="label")
    assert "a linear probe reads the class from the mean of q(z | image) at 0.853" in line
    assert "not aligned" in line and "paired_repeat=" in line and not line.endswith(REMEDIES)
    # a probe near chance: the code carries nothing, so the collapse remedies stand
    (line,) = accuracy_warnings({"label": 0.11}, chance, None, x="image", probe={"image": 0.2}, probed="label")
    assert line.endswith(REMEDIES) and "not aligned" not in line
    # the probe of another modality says nothing about this one
    (line,) = accuracy_warnings({"label": 0.11}, chance, None, x="image", probe={"m1": 0.9}, probed="label")
    assert line.endswith(REMEDIES)
    # nor does a probe of the class say anything about another predicted modality
    (line,) = accuracy_warnings({"colour": 0.26}, {"colour": 0.25}, None, x="image", probe={"image": 0.9},
                                probed="digit")
    assert line.endswith(REMEDIES)


def test_the_sweep_summary_tells_unaligned_codes_from_collapse():
    import io

    from rich.console import Console

    from mvae_cli.cli.sweep import _print_warnings

    rows = [{"point": f"supervision=0.01,seed={s}", "supervision": 0.01, "seed": s, "accuracy.label": 0.11,
             "chance.label": 0.117, "baseline.label": 0.84, "probe.image": 0.85} for s in (0, 1)]
    out = io.StringIO()
    _print_warnings(rows, ["supervision", "seed"], Console(file=out, width=600))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "label is predicted from image at chance" in lines[0] and "not aligned" in lines[0]
