"""Export to neuromorphic toolchains (NIR)."""

from .nir import simulate_nir, to_nir, write_nir

__all__ = ["to_nir", "write_nir", "simulate_nir"]
