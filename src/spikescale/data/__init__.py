"""Datasets and encoders. Samples are ``[T, C]``; batches are time-major ``[T, B, C]``."""

from .xor import XOR_TASKS, XORBatch, delayed_xor, multiscale_xor

__all__ = ["XOR_TASKS", "XORBatch", "delayed_xor", "multiscale_xor"]
