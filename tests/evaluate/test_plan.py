"""The evaluation plan: which proposals and targets each model is evaluated under, and why each
figure it leaves out is left out, decided from the model before anything is computed."""

import pytest

from mvae_cli.engine.run import load_trained
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.plan import FAMILIES, plan_evaluation
from mvae_cli.evaluate.run_eval import evaluate_run
from tests.evaluate.old_runs import install


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("plans")


def _model(folder, run):
    run_dir = folder / run
    if not run_dir.exists():
        install(run, folder)
    return load_trained(run_dir, "best", "cpu")[2]


def _figures(plan):
    return {(f.family, f.proposal): f for f in plan.figures}


def test_a_joint_model_defines_every_figure_and_reads_log_p_x_given_y_off_the_joint_target(folder):
    plan = plan_evaluation(_model(folder, "mvae-three"))
    assert (plan.x, plan.y) == ("image", ["label", "parity"])
    assert plan.proposals == {"image": ["image"], "image+label+parity": ["image", "label", "parity"],
                              "label+parity": ["label", "parity"]}
    assert plan.targets == [["image"], ["image", "label", "parity"]] and plan.joint == 1
    assert [(f.family, f.proposal) for f in plan.figures] == [(family, p) for p in plan.proposals for family in FAMILIES]
    for p, name in enumerate(plan.proposals):
        figures = {f.family: f for f in plan.figures if f.proposal == name}
        assert figures["log_px"].at == (p, 0) and figures["log_pxy"].at == (p, 1)
        assert figures["log_px_given_y"].at == (p, 1) and figures["log_px_given_y"].less_log_py  # Eq. 7
        assert not figures["log_px"].less_log_py and all(f.reason is None for f in figures.values())
    assert plan.needs_log_py and plan.predicted == ["label", "parity"] and plan.accuracy_reason is None
    assert plan.decoded == ["image", "label", "parity"]


def test_a_conditional_decoder_has_log_p_x_given_y_as_its_target_x_and_no_log_p_x(folder):
    plan = plan_evaluation(_model(folder, "cvae"))
    assert plan.proposals == {"image+label": ["image", "label"]} and plan.targets == [["image"]]
    figures = _figures(plan)
    conditional = figures["log_px_given_y", "image+label"]
    assert conditional.at == (0, 0) and not conditional.less_log_py  # log p(x | y) itself, no log p̂(y)
    assert figures["log_px", "image+label"].reason == "cvae models p(image | label), not p(image)"
    assert figures["log_pxy", "image+label"].reason == "cvae does not generate label"
    for family in FAMILIES:  # a proposal the model does not define: that reason first
        assert figures[family, "image"].reason == figures[family, "label"].reason == \
            "cvae has one inference network, q(z|image,label)"
    assert not plan.needs_log_py and plan.decoded == ["image"]
    assert plan.predicted == [] and plan.accuracy_reason == "cvae has one inference network, q(z|image,label)"


def test_a_vae_is_evaluated_under_q_z_given_x_on_x_alone(folder):
    plan = plan_evaluation(_model(folder, "vae"))
    assert plan.proposals == {"image": ["image"]} and plan.targets == [["image"]]
    defined = [(f.family, f.proposal) for f in plan.figures if f.at is not None]
    assert defined == [("log_px", "image")]
    assert _figures(plan)["log_px_given_y", "image"].reason == "vae does not generate label"
    assert plan.accuracy_reason == "vae does not generate label"


def test_a_plan_with_nothing_to_estimate_evaluates_without_decoding(folder):
    # The CVAE scores only its x: with x = label nothing is defined (this raised a KeyError before the plan).
    plan = plan_evaluation(_model(folder, "cvae"), "label", ["image"])
    assert not plan.estimates and plan.decoded == []
    result = evaluate_run(folder / "cvae", EvalConfig(particles=3, prior_samples=4, limit=5, x="label", y=["image"],
                                                      baseline=False), device="cpu")
    for family in FAMILIES:
        assert all(value is None for value in result[family].values())
    assert result["not_defined"]["log_px_given_y.label+image"] == "cvae does not generate label"
    assert result["accuracy"] == {}  # y = image: nothing to predict


def test_the_modalities_are_checked_when_the_plan_is_made(folder):
    from mvae_cli.errors import UserError

    model = _model(folder, "mvae")
    with pytest.raises(UserError, match="unknown modality 'sound'"):
        plan_evaluation(model, "sound")
    with pytest.raises(UserError, match="must not contain x"):
        plan_evaluation(model, "image", ["image"])
