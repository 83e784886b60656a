"""Datasets and encoders. Samples are ``[T, C]``; batches are time-major ``[T, B, C]``.

Recipes load data by name with :func:`load_splits` (see :mod:`spikescale.data.registry` and
``docs/data.md``); the pieces below are the building blocks.
"""

from .arrays import ArrayDataset, EventDataset
from .audio import CochlearEncoder
from .batch import Batch, collate
from .events import EventBinning, SparseFrames, bin_events
from .heidelberg import SpikeFile, SpikeFileDataset
from .noise import SpikeNoise
from .registry import DataSplits, list_datasets, load_splits
from .sequential import SequentialImages
from .speech import FSDD, AudioFolder
from .xor import XOR_TASKS, XORBatch, delayed_xor, multiscale_xor

__all__ = [
    "ArrayDataset",
    "AudioFolder",
    "Batch",
    "CochlearEncoder",
    "DataSplits",
    "EventBinning",
    "EventDataset",
    "FSDD",
    "SequentialImages",
    "SparseFrames",
    "SpikeFile",
    "SpikeFileDataset",
    "SpikeNoise",
    "XOR_TASKS",
    "XORBatch",
    "bin_events",
    "collate",
    "delayed_xor",
    "list_datasets",
    "load_splits",
    "multiscale_xor",
]
