"""dpd: policy distillation for reinforcement learning on Stable-Baselines3."""

__version__ = "0.1.0"

__all__ = ["Peers", "Student", "__version__"]


def __getattr__(name: str) -> object:
    """``dpd.Peers`` and ``dpd.Student`` (``dpd.api``), imported on first use: ``import dpd``
    and ``dpd --version`` stay free of torch and SB3."""
    if name in ("Peers", "Student"):
        from dpd import api

        return getattr(api, name)
    raise AttributeError(f"module 'dpd' has no attribute {name!r}")
