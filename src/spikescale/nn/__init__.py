"""nn.Modules: spiking layers, readouts, masks, timing factors, model builders and monitors."""

from .base import Soma, SpikingLayer, check_sequence, check_step
from .builders import MODEL_KINDS, build_network
from .layers import DHDense, DHRecurrent, LIFDense
from .masks import MASK_KINDS, branch_mask
from .monitor import SpikeMonitor
from .network import Network
from .params import count_parameters, param_groups
from .readout import READOUT_MODES, Readout
from .timing import PRESETS, TimingFactor
from .ttfs import TTFSDense, TTFSNetwork

__all__ = [
    "DHDense",
    "DHRecurrent",
    "LIFDense",
    "MASK_KINDS",
    "MODEL_KINDS",
    "Network",
    "PRESETS",
    "READOUT_MODES",
    "Readout",
    "Soma",
    "SpikeMonitor",
    "SpikingLayer",
    "TTFSDense",
    "TTFSNetwork",
    "TimingFactor",
    "branch_mask",
    "build_network",
    "check_sequence",
    "check_step",
    "count_parameters",
    "param_groups",
]
