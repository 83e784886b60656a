"""nn.Modules: spiking layers, readouts, masks, timing factors, model builders and monitors."""

from .base import Soma, SpikingLayer, check_sequence, check_step
from .builders import MODEL_KINDS, build_network
from .delays import (
    DelayBlock,
    DelayedDense,
    DelayReadout,
    SigmaSchedule,
    build_delay_network,
    clamp_positions_,
    export_delays,
    set_eval_delays,
)
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
    "DelayBlock",
    "DelayReadout",
    "DelayedDense",
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
    "SigmaSchedule",
    "SpikingLayer",
    "TTFSDense",
    "TTFSNetwork",
    "TimingFactor",
    "branch_mask",
    "build_delay_network",
    "build_network",
    "check_sequence",
    "check_step",
    "clamp_positions_",
    "count_parameters",
    "export_delays",
    "param_groups",
    "set_eval_delays",
]
