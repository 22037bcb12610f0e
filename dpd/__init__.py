"""dpd: policy distillation for reinforcement learning on Stable-Baselines3."""

__version__ = "0.1.0"

__all__ = ["Peers", "Student", "supervised_kd", "__version__"]


def __getattr__(name: str) -> object:
    """``dpd.Peers``, ``dpd.Student`` and ``dpd.supervised_kd`` (``dpd.api``), imported on first use: ``import dpd``
    and ``dpd --version`` stay free of torch and SB3."""
    if name in ("Peers", "Student", "supervised_kd"):
        from dpd import api

        return getattr(api, name)
    raise AttributeError(f"module 'dpd' has no attribute {name!r}")
