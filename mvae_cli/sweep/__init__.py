"""Studies: a recipe with a ``grid`` becomes one training run per grid point, each trained by
the one engine, evaluated by the one estimator, and aggregated into tables.

- :mod:`~mvae_cli.sweep.grid`: load a sweep recipe and expand its grid into validated points.
- :mod:`~mvae_cli.tables.stats`: mean, standard deviation and Student-t confidence intervals.
- :mod:`~mvae_cli.tables.results`: flatten ``eval.json`` into rows; write and read the tables.
- :mod:`~mvae_cli.sweep.runner`: train and evaluate every point, resumably, N at a time.
"""
