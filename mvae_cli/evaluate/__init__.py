"""Evaluation: the one importance-sampling estimator and ``mvae eval`` (MVAE paper, §5)."""
