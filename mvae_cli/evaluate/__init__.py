"""Evaluation: the one importance-sampling estimator and ``mvae eval`` (MVAE paper, §5)."""


def proposal_label(proposal: str) -> str:
    """``image+label`` → ``q(z | image, label)``; long subsets (CelebA19's 19 modalities) abbreviated."""
    names = proposal.split("+")
    if len(names) > 3:
        return f"q(z | {names[0]} and the {len(names) - 1} other modalities)"
    return f"q(z | {', '.join(names)})"
