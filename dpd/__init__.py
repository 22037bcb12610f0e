"""dpd: policy distillation for reinforcement learning on Stable-Baselines3."""

__version__ = "0.1.0"
