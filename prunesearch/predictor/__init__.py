"""Predictor: planned (see the issues); intentionally empty until its issue lands."""
