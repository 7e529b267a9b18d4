"""Experiment-level orchestration called by the notebooks."""
