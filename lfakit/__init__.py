"""lfakit: a notebook-first reproducibility kit for comparing training loss functions."""

__version__ = "0.1.0"
