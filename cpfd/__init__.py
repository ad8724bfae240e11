"""CPFD: Confidence-aware Privileged Feature Distillation for short-video classification."""

__version__ = "0.1.0"
