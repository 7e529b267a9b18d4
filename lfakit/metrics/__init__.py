"""Metrics: classification, calibration, IQA correlation, privacy attacks."""
