"""Figures, written to files (PNG/PDF) with matplotlib's Agg backend; never shown on screen."""

import matplotlib

matplotlib.use("Agg")
