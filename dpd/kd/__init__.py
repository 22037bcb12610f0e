"""Supervised knowledge distillation on the shared loss registry, with fidelity metrics.

``dpd kd`` (dpd/kd/cli.py) trains or loads a teacher, distills it into a student with one of the
methods in ``dpd.kd.methods``, and reports accuracy beside fidelity (agreement, predictive KL).
This package imports nothing heavy, so that building the command line stays fast.
"""
