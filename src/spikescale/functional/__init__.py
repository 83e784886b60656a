"""Pure tensor maths with hand-written autograd: state in, state out.

Every multi-step function here has a plain-autograd ``*_reference`` twin used by the tests, and a
single-step form for streaming; all three share one definition of each update equation.
"""

from .delays import (
    DelayState,
    delay_conv,
    delay_conv_reference,
    delay_kernel,
    delay_step,
    integer_delay_conv,
    integer_delay_step,
    integer_delays,
    interpolation_taps,
)
from .dh_lif import (
    DHLIFState,
    dh_lif_recurrent_sequence,
    dh_lif_recurrent_sequence_reference,
    dh_lif_recurrent_step,
    dh_lif_sequence,
    dh_lif_sequence_reference,
    dh_lif_step,
)
from .lif import RESETS, LIFState, lif_sequence, lif_sequence_reference, lif_step
from .scan import leaky_integrator, linear_recurrence, linear_recurrence_reference, linear_scan, linear_step
from .surrogate import SURROGATES, ATan, FastSigmoid, MultiGaussian, Rectangular, Surrogate, get_surrogate, heaviside
from .ttfs import TTFS_BACKENDS, TTFSOutput, ttfs_decode, ttfs_dense, ttfs_dense_reference, ttfs_dense_window, ttfs_encode

__all__ = [
    "ATan",
    "DHLIFState",
    "DelayState",
    "FastSigmoid",
    "LIFState",
    "MultiGaussian",
    "RESETS",
    "Rectangular",
    "SURROGATES",
    "Surrogate",
    "TTFSOutput",
    "TTFS_BACKENDS",
    "delay_conv",
    "delay_conv_reference",
    "delay_kernel",
    "delay_step",
    "dh_lif_recurrent_sequence",
    "dh_lif_recurrent_sequence_reference",
    "dh_lif_recurrent_step",
    "dh_lif_sequence",
    "dh_lif_sequence_reference",
    "dh_lif_step",
    "get_surrogate",
    "heaviside",
    "integer_delay_conv",
    "integer_delay_step",
    "integer_delays",
    "interpolation_taps",
    "leaky_integrator",
    "lif_sequence",
    "lif_sequence_reference",
    "lif_step",
    "linear_recurrence",
    "linear_recurrence_reference",
    "linear_scan",
    "linear_step",
    "ttfs_decode",
    "ttfs_dense",
    "ttfs_dense_reference",
    "ttfs_dense_window",
    "ttfs_encode",
]
