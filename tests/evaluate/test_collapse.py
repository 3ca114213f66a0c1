import io

from rich.console import Console

from mvae_cli.evaluate.collapse import (ALIGNMENT, BELOW_BASELINE, CHANCE, INACTIVE, REMEDIES, UNALIGNED,
                                        accuracy_findings, grouped_lines, latent_findings, remedy_lines)


def test_an_inactive_latent_is_found_with_its_numbers_and_its_remedy():
    (found,) = latent_findings("q(z | image)", active=0, latent_dim=16, kl=0.001)
    assert found.kind == INACTIVE and found.subject == "q(z | image)"
    assert "q(z | image) has 0 of 16 active units" in found.sentence and "KL 0.001" in found.sentence
    assert remedy_lines([found]) == [f"against collapse and chance: {REMEDIES}"]
    assert latent_findings("q(z | image)", active=3, latent_dim=16, kl=0.05)  # KL ≈ 0 alone is collapse too
    assert latent_findings("q(z | image)", active=3, latent_dim=16, kl=12.0) == []


def test_accuracy_at_chance_and_below_the_baseline_are_found():
    accuracy = {"digit": 0.11, "shape": 0.70, "colour": 0.95, "mean": 0.59, "attributes/Bald": 0.5}
    chance = {"digit": 0.10, "shape": 0.34, "colour": 0.26}
    baseline = {"digit": 0.75, "shape": 0.90, "colour": 0.96}
    found = accuracy_findings(accuracy, chance, baseline, x="image")
    assert [(f.kind, f.subject) for f in found] == [(CHANCE, "digit"), (BELOW_BASELINE, "shape")]
    assert found[0].sentence.startswith("digit is predicted from image at chance (0.110; chance 0.100)")
    assert found[1].sentence.startswith("shape is predicted from image worse (0.700) than by a classifier trained")
    assert accuracy_findings({"colour": 0.95}, chance) == []


def test_one_line_per_kind_of_finding_and_each_remedy_once():
    found = (latent_findings("q(z | shape)", 1, 16, 0.04) + latent_findings("q(z | size)", 0, 16, 0.01)
             + accuracy_findings({"shape": 0.35, "colour": 0.25, "size": 0.6}, {"shape": 0.35, "colour": 0.26,
                                 "size": 0.5}, {"shape": 0.9, "colour": 0.9, "size": 0.95}, x="image"))
    lines = grouped_lines(found)
    assert len(lines) == 3  # inactive, at chance, below the baseline: however many subjects each names
    assert lines[0] == ("inactive latent (posterior collapse: it ignores its input): "
                        "q(z | shape) (1 of 16 units, KL 0.04); q(z | size) (0 of 16 units, KL 0.01)")
    assert lines[1] == ("predicted from image at chance (nothing usable learnt): shape (0.350, chance 0.350); "
                        "colour (0.250, chance 0.260)")
    assert lines[2].startswith("predicted from image worse than by a classifier trained on the paired rows alone: "
                               "size (0.600 vs 0.950)")
    assert remedy_lines(found) == [f"against collapse and chance: {REMEDIES}"]  # once for four findings


def test_in_a_sweep_a_line_names_the_grid_points_of_each_subject():
    found = [f.at(point) for point, kl in (("0.01", 0.01), ("0.1", 0.02))
             for f in latent_findings("q(z | shape)", 0, 16, kl)]
    assert grouped_lines(found) == ["inactive latent (posterior collapse: it ignores its input): "
                                    "q(z | shape) [0.01, 0.1]"]


def test_a_code_that_carries_the_class_at_chance_is_called_unaligned_not_collapsed():
    chance = {"label": 0.117}
    (found,) = accuracy_findings({"label": 0.11}, chance, {"label": 0.84}, x="image", probe={"image": 0.853},
                                 probed="label")
    assert found.kind == UNALIGNED and "a linear probe reads the class from the mean of q(z | image) at 0.853" \
        in found.sentence and "not aligned" in found.sentence
    assert remedy_lines([found]) == [f"to align the codes: {ALIGNMENT}"] and "paired_repeat=" in ALIGNMENT
    # a probe near chance: the code carries nothing, so the collapse remedies stand
    (found,) = accuracy_findings({"label": 0.11}, chance, None, x="image", probe={"image": 0.2}, probed="label")
    assert found.kind == CHANCE
    # the probe of another modality says nothing about this one
    (found,) = accuracy_findings({"label": 0.11}, chance, None, x="image", probe={"m1": 0.9}, probed="label")
    assert found.kind == CHANCE
    # nor does a probe of the class say anything about another predicted modality
    (found,) = accuracy_findings({"colour": 0.26}, {"colour": 0.25}, None, x="image", probe={"image": 0.9},
                                 probed="digit")
    assert found.kind == CHANCE


def _sweep_warnings(rows, width=80):
    from mvae_cli.cli.study_tables import print_warnings

    out = io.StringIO()
    print_warnings(rows, ["supervision", "seed"], Console(file=out, width=width))
    return out.getvalue()


def _entries(text):
    """The printed entries: a line that starts a word is a new entry, an indented one continues it."""
    entries = []
    for line in text.splitlines():
        if line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line)
    return entries


def test_the_sweep_summary_warns_once_per_finding_on_means_over_seeds():
    rows = [{"point": f"supervision={f},seed={s}", "supervision": f, "seed": s,
             "accuracy.label": acc + 0.01 * s, "chance.label": 0.11, "baseline.label": base}
            for f, acc, base in ((0.02, 0.10, 0.45), (0.05, 0.11, 0.5), (1.0, 0.76, 0.89)) for s in (0, 1, 2)]
    text = _sweep_warnings(rows)
    assert max(len(line) for line in text.splitlines()) <= 80
    entries = _entries(text)
    assert len(entries) == 4, text  # what the brackets hold, two findings, the remedies once
    assert entries[0].startswith("note    means over seeds; in brackets the grid points (supervision)")
    assert entries[1] == "warning predicted from x at chance (nothing usable learnt): label [0.02, 0.05]"
    assert entries[2].startswith("warning predicted from x worse than by a classifier") and "label [1.0]" in entries[2]
    assert entries[3].startswith("remedy  against collapse and chance:")


def test_the_sweep_summary_tells_unaligned_codes_from_collapse():
    rows = [{"point": f"supervision=0.01,seed={s}", "supervision": 0.01, "seed": s, "accuracy.label": 0.11,
             "chance.label": 0.117, "baseline.label": 0.84, "probe.image": 0.85} for s in (0, 1)]
    entries = _entries(_sweep_warnings(rows, width=600))
    assert len(entries) == 3 and "not aligned" in entries[1] and "label [0.01]" in entries[1]
    assert entries[2].startswith("remedy  to align the codes:")
