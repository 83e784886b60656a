r"""Synaptic delays: interpolated temporal kernels (DCLS) and integer delays, as sequences and as steps.

A synapse :math:`j \to i` has a weight :math:`w` and a real *position* :math:`p \in [-h, h]`,
:math:`h = \lfloor K/2 \rfloor`, where ``K`` (``max_delay``, odd) is the number of taps: delays run over
0 … K−1 steps. The delay centre is :math:`\delta = h - p` steps, so :math:`p = +h` means no delay and
:math:`p = -h` the largest delay K−1 (spec delays §1.3; the official code's tap index is
:math:`k = K-1-d`). Training realises the synapse as K taps in *delay order* (spec §1.2):

.. math::
    \hat g_d = \frac{g_d}{\sum_{d'} g_{d'} + 10^{-7}}, \quad d = 0 \dots K-1, \qquad
    g_d = \begin{cases} \exp\!\big(-\tfrac12 ((d-\delta)/s)^2\big), \ s = |\sigma| + 0.27 & \text{gauss} \\
                       \max(0,\ |\sigma| + 1 - |d - \delta|) & \text{linear (dcls "max")} \end{cases}

and a layer is the causal convolution over time (``q`` runs over the ``Q`` delays per synapse)

.. math:: y_i[t] = \sum_j \sum_d k_{ij}[d]\, x_j[t-d], \qquad k_{ij}[d] = \sum_q w_{ijq}\, \hat g_d(\delta_{ijq}),

with :math:`x_j[\tau] = 0` outside the sequence (or the history held in a :class:`DelayState`). Output
length: ``"same"`` gives T steps, ``"extend"`` T + h steps (the official right padding of (K−1)/2, so that
late spikes still arrive). Integer delays (evaluation, export) use
:math:`d = h - \mathrm{clamp}(\mathrm{round}(p), -h, h)` (round half to even, as ``torch.round``) and a one-hot
kernel holding exactly :math:`w`.

Computation methods, equal up to float rounding and the stated truncation (tests):

* ``"dense"`` — the official approach and the reference: build the ``[O, I, K]`` kernel and run
  ``conv1d`` over all K taps (K × the work of a dense layer).
* ``"fourier"`` — real DFT over time (``n = T + K − 1`` points, no wrap-around), one complex matrix product
  per frequency, inverse DFT: about :math:`4F/T` dense layers with :math:`F = n/2+1`, whatever σ is. The
  transforms are matrix products with cached DFT matrices (GEMMs in the tensors' own layouts).
* ``"taps"`` — only the W taps per synapse that the interpolation covers: every tap with
  :math:`|d-\delta| < R` is kept, where R makes each dropped tap at most ``tolerance`` × |w| (gauss:
  :math:`R^2 = \tfrac14 + 2s^2 \ln(1/\mathrm{tol})`, W = 6 at σ = 0.23 with tol = 1e-6) or exactly
  zero (linear: :math:`R = |\sigma| + 1`). Run by the sparse-tap kernels of
  :mod:`spikescale.functional.delay_kernels` (W dense layers of work); the integer mode is the same
  kernel with W = 1.
* ``"auto"`` — the cheapest of these by :func:`estimate_cost`.

Streaming: :func:`delay_step` / :func:`integer_delay_step` keep a ring buffer of the last K inputs per
presynaptic channel (:class:`DelayState`); the sequence functions accept and return the same state, so
a sequence equals the same steps one by one (fed with zeros for the ``"extend"`` steps).

Devices: CPU and CUDA for ``"dense"``/``"fourier"``; ``"taps"`` is compiled for CPU (numba) and falls back
to an equal plain-PyTorch computation elsewhere. Autograd: all methods; the sparse-tap kernels have a
hand-written backward, checked with ``gradcheck`` in float64.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import delay_kernels
from .lif import LIFState, _as_threshold, check_reset, kernel_for
from .surrogate import SurrogateLike, get_surrogate
from .precision import full_precision

__all__ = [
    "INTERPOLATIONS",
    "LENGTHS",
    "METHODS",
    "DelayState",
    "check_max_delay",
    "output_length",
    "delay_centres",
    "interpolation_taps",
    "delay_kernel",
    "integer_delays",
    "integer_delay_lif",
    "one_hot_kernel",
    "tap_window",
    "CostConstants",
    "estimate_cost",
    "choose_method",
    "delay_conv",
    "delay_conv_reference",
    "kernel_conv",
    "integer_delay_conv",
    "depthwise_delay_conv",
    "initial_delay_state",
    "delay_step",
    "integer_delay_step",
    "depthwise_delay_step",
]

INTERPOLATIONS = ("gauss", "linear")
LENGTHS = ("same", "extend")
METHODS = ("auto", "dense", "fourier", "taps")
SIGMA_FLOOR = 0.27  # built into the dcls ``gauss`` kernel: σ = 0.23 gives an effective width of 0.5 taps
NORM_EPS = 1e-7  # added to the tap sum before normalising (dcls)
DEFAULT_TOLERANCE = 1e-6
_COMPILED_DTYPES = (torch.float32, torch.float64)

SigmaLike = Union[float, Tensor]


# ---------------------------------------------------------------------------------------------------
# Arguments


def check_max_delay(max_delay: int, *, odd: bool = True) -> int:
    """Return ``max_delay`` (K, the number of taps) or raise ``ValueError`` (K < 1, or even where odd is needed)."""
    if isinstance(max_delay, bool) or not isinstance(max_delay, int) or max_delay < 1:
        raise ValueError(f"max_delay (the number of taps K, delays 0…K-1) must be an integer >= 1, got {max_delay!r}")
    if odd and max_delay % 2 == 0:
        raise ValueError(
            f"max_delay must be odd for real-valued positions (the centre mapping d = K//2 - p needs a middle tap), "
            f"got {max_delay}; use {max_delay + 1} (the official code bumps K to the next odd number)"
        )
    return max_delay


def _check_choice(value: str, allowed: tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {allowed}")
    return value


def output_length(steps: int, max_delay: int, length: str = "extend") -> int:
    """Output steps for ``steps`` input steps: ``"same"`` → T, ``"extend"`` → T + ⌊K/2⌋."""
    _check_choice(length, LENGTHS, "output length")
    return steps + (max_delay // 2 if length == "extend" else 0)


def _check_positions(positions: Tensor, max_delay: int) -> None:
    half = max_delay // 2
    if positions.numel() and (positions.min() < -half or positions.max() > half):
        raise ValueError(
            f"delay positions must lie in [-{half}, {half}] for max_delay={max_delay} "
            f"(got [{positions.min().item():.4g}, {positions.max().item():.4g}]); clamp them after each "
            "optimiser step (DelayedDense.clamp_positions_)"
        )


def _check_delays(delays: Tensor, max_delay: int) -> None:
    if delays.is_floating_point():
        raise ValueError(f"integer delays must be an integer tensor, got dtype {delays.dtype}")
    if delays.numel() and (delays.min() < 0 or delays.max() > max_delay - 1):
        raise ValueError(
            f"integer delays must lie in [0, {max_delay - 1}] for max_delay={max_delay} "
            f"(got [{delays.min().item()}, {delays.max().item()}])"
        )


def _check_input(x: Tensor, in_features: int, who: str) -> None:
    if x.dim() != 3 or x.shape[-1] != in_features:
        raise ValueError(f"{who}: expected input of shape [T, B, {in_features}] (time-major), got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------------
# Kernels


def delay_centres(positions: Tensor, max_delay: int) -> Tensor:
    """Delay centres δ = ⌊K/2⌋ − p in steps (p = +⌊K/2⌋: no delay; p = −⌊K/2⌋: K−1 steps)."""
    return (max_delay // 2) - positions


def interpolation_taps(
    positions: Tensor, sigma: SigmaLike, max_delay: int, interpolation: str = "gauss"
) -> Tensor:
    """Normalised interpolation taps ``ĝ [..., K]`` in delay order for positions ``[...]`` (module doc).

    Each row sums to ``Σ g / (Σ g + 1e-7)`` ≈ 1 (mass 1, truncated and renormalised at the ends). Gradients
    flow to ``positions`` (and to ``sigma`` when it is a tensor that requires them).
    """
    check_max_delay(max_delay)
    _check_choice(interpolation, INTERPOLATIONS, "interpolation")
    if interpolation == "gauss" and not (isinstance(sigma, Tensor) and sigma.requires_grad):
        return _GaussTaps.apply(positions, abs(float(sigma)) + SIGMA_FLOOR, max_delay)
    distance = _distances(positions, max_delay)
    width = sigma.abs() if isinstance(sigma, Tensor) else abs(float(sigma))
    if interpolation == "gauss":
        bump = _gauss_bump(-0.5 * (distance / (width + SIGMA_FLOOR)) ** 2)
    else:
        bump = torch.relu(width + 1.0 - distance.abs())
    return bump / (bump.sum(-1, keepdim=True) + NORM_EPS)


def _tap_floor(dtype: torch.dtype) -> float:
    """Smallest exponent of a nonzero gauss tap: ``ln(tiny / eps)`` of ``dtype`` (−71.4 in float32).

    Taps below ``tiny / eps`` (8.6e-32 in float32) are set to exactly zero. Their products with a weight
    or a gradient above ``eps`` in magnitude would be subnormal, and many x86 CPUs compute with subnormal
    numbers far more slowly than with normal ones: with the old floor of ``e · tiny`` the dense
    kernel ``w · ĝ`` was mostly subnormal at small σ, and a training step of the dense or Fourier path
    took up to 30× longer on an Intel Xeon (docs/delays.md). No sum with the central tap (at least
    ``exp(−1/(8 s²))``) can tell such a tap from zero.
    """
    info = torch.finfo(dtype)
    return math.log(info.tiny / info.eps)


def _gauss_bump(exponent: Tensor) -> Tensor:
    """``exp(exponent)``, exactly zero at or below :func:`_tap_floor` (the exponent is clamped there first,
    which also keeps ``exp`` on its fast path)."""
    floor = _tap_floor(exponent.dtype)
    return torch.where(exponent > floor, exponent.clamp(min=floor).exp(), 0.0)


def _distances(positions: Tensor, max_delay: int) -> Tensor:
    """``d − δ`` for every tap ``d`` ``[..., K]``."""
    steps = torch.arange(max_delay, device=positions.device, dtype=positions.dtype)
    return steps - delay_centres(positions, max_delay).unsqueeze(-1)


class _GaussTaps(torch.autograd.Function):
    r"""Normalised Gaussian taps with the position gradient in closed form (fewer passes, one saved tensor).

    With :math:`u_d = (d - \delta)/s^2`: :math:`\partial \hat g_d / \partial \delta = \hat g_d (u_d - \sum_{d'} \hat g_{d'} u_{d'})`
    (exact, the 1e-7 included), and :math:`\partial \delta / \partial p = -1`.
    """

    @staticmethod
    @full_precision
    def forward(ctx, positions, width, max_delay):
        taps = _gauss_bump(_distances(positions, max_delay).square_().mul_(-0.5 / (width * width)))
        taps.div_(taps.sum(-1, keepdim=True).add_(NORM_EPS))
        ctx.save_for_backward(positions, taps)
        ctx.constants = (width, max_delay)
        return taps

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_taps):
        positions, taps = ctx.saved_tensors
        width, max_delay = ctx.constants
        distance = _distances(positions, max_delay)
        weighted = grad_taps * taps
        grad_centre = (weighted * distance).sum(-1) - weighted.sum(-1) * (taps * distance).sum(-1)
        return grad_centre.mul_(-1.0 / (width * width)), None, None


def delay_kernel(
    weight: Tensor, positions: Tensor, sigma: SigmaLike, max_delay: int, interpolation: str = "gauss"
) -> Tensor:
    """Dense kernel ``[O, I, K]`` (delay order) of synaptic weights/positions ``[O, I, Q]``: ``Σ_q w ĝ``."""
    _check_synapse_shapes(weight, positions)
    taps = interpolation_taps(positions, sigma, max_delay, interpolation)
    if weight.shape[-1] == 1:
        return weight * taps.squeeze(-2)
    return (weight.unsqueeze(-1) * taps).sum(-2)


def _check_synapse_shapes(weight: Tensor, positions: Tensor) -> None:
    if weight.dim() != 3 or weight.shape != positions.shape:
        raise ValueError(
            f"weight and positions must both have shape [out, in, delays_per_synapse]; "
            f"got {tuple(weight.shape)} and {tuple(positions.shape)}"
        )


def integer_delays(positions: Tensor, max_delay: int) -> Tensor:
    """Integer delays ``h − clamp(round(p), −h, h)`` (int64), as the official evaluation rounds positions."""
    half = max_delay // 2
    return (half - torch.round(positions.detach()).clamp(-half, half)).long()


def one_hot_kernel(weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """Dense kernel ``[O, I, K]`` holding ``w`` at each synapse's integer delay (summed over ``Q``)."""
    _check_delays(delays, max_delay)
    if weight.dim() != 3 or weight.shape != delays.shape:
        raise ValueError(
            f"weight and delays must both have shape [out, in, delays_per_synapse]; got {tuple(weight.shape)} "
            f"and {tuple(delays.shape)}"
        )
    kernel = weight.new_zeros(*weight.shape[:2], max_delay)
    return kernel.scatter_add(-1, delays, weight)


def tap_window(
    positions: Tensor,
    sigma: SigmaLike,
    max_delay: int,
    interpolation: str = "gauss",
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[Tensor, int]:
    """First covered delay ``start [...]`` (int64) and the window width ``W`` of every synapse.

    The window ``start … start+W−1`` holds every tap with ``|d − δ| < R`` (module doc), shifted inwards at
    the ends of ``0 … K−1``. Outside it a gauss tap is at most ``tolerance`` × |w| (the nearest tap to δ is
    within half a step, so the normaliser is at least ``exp(−1/(8 s²))``) and a linear tap is zero.
    """
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tap tolerance must lie in (0, 1), got {tolerance}")
    width = abs(float(sigma))
    if interpolation == "gauss":
        s = width + SIGMA_FLOOR
        radius = math.sqrt(0.25 + 2.0 * s * s * math.log(1.0 / tolerance))
    else:
        _check_choice(interpolation, INTERPOLATIONS, "interpolation")
        radius = width + 1.0
    taps = max(1, min(max_delay, math.ceil(2.0 * radius)))
    centres = delay_centres(positions.detach(), max_delay)
    start = (torch.floor(centres - radius) + 1).clamp(0, max_delay - taps).long()
    return start, taps


# ---------------------------------------------------------------------------------------------------
# Costs and the automatic choice


class CostConstants(NamedTuple):
    """Relative time per forward multiply-add of each method (unit: the Fourier path's forward pass).

    Fitted by ``benchmarks/bench_delays.py --calibrate`` (least squares on log times of the three layers
    of the benchmark network, 140→256 without an input gradient, 256→256 and 256→20; T=100, B=64, K=25;
    W = 1, 2, 4, 6, 14, 25; every method, forward alone and forward+backward) on one thread of a 2-core
    AMD EPYC (torch 2.13 with MKL and oneDNN; thread CPU time); RMS error of the fit 11 %. conv1d
    (oneDNN) does its K-fold work about 3× faster per multiply-add than the MKL GEMMs of the Fourier path. The
    compiled few-tap kernels cost ``a + b/W`` per multiply-add (``b``: packing and loads shared by a
    synapse's W taps); one tap has kernels of its own (16-bit spike masks forward, load-bound backward).
    """

    dense: float = 0.29
    dense_backward: float = 0.96
    fourier_backward: float = 1.78
    taps: float = 0.27
    taps_per_synapse: float = 0.86
    taps_backward: float = 0.47
    taps_backward_per_synapse: float = 2.73
    one_tap: float = 0.67
    one_tap_backward: float = 3.55
    narrow_dense: float = 33.0  # slow-down on narrow outputs, 1 + c/out
    narrow_taps: float = 7.0
    transform_weight: float = 0.7  # the Fourier transforms (long GEMMs) relative to its per-frequency products


COSTS = CostConstants()


def _time_per_mac(method: str, taps: int, c: CostConstants) -> tuple[float, float]:
    if method == "dense":
        return c.dense, c.dense_backward
    if method == "fourier":
        return 1.0, c.fourier_backward
    if taps == 1:
        return c.one_tap, c.one_tap_backward
    return c.taps + c.taps_per_synapse / taps, c.taps_backward + c.taps_backward_per_synapse / taps


def _macs(method: str, steps: int, batch: int, in_features: int, out_features: int, max_delay: int,
          taps: int, length: str, delays_per_synapse: int, transform_weight: float) -> float:
    """Forward multiply-adds of one delay convolution (the Fourier transforms weighted)."""
    out_steps = output_length(steps, max_delay, length)
    pairs = in_features * out_features * batch
    if method == "dense":
        return pairs * max_delay * out_steps
    if method == "taps":
        return pairs * taps * delays_per_synapse * out_steps
    freqs = (steps + max_delay - 1) // 2 + 1
    signals = (steps * in_features + out_steps * out_features) * batch
    transforms = 2 * freqs * (signals + max_delay * in_features * out_features)
    return 4 * freqs * pairs + transform_weight * transforms


def estimate_cost(
    method: str, *, steps: int, batch: int, in_features: int, out_features: int, max_delay: int,
    taps: int, length: str = "extend", delays_per_synapse: int = 1, training: bool = True,
    input_grad: bool = True, constants: CostConstants = COSTS,
) -> float:
    """Estimated time of one delay convolution, forward (and backward when ``training``), arbitrary unit.

    Multiply-adds × the method's relative time per multiply-add (:class:`CostConstants`), times
    ``1 + c/out`` on narrow outputs. ``taps`` is the window width W of the ``"taps"`` method (1 for
    integer delays); the backward pass computes the parameter gradient and, when ``input_grad``, the input
    gradient, each about the forward pass's work. Without the compiled kernels ``"taps"`` runs as a dense
    kernel through the Fourier path and costs a little more than ``"fourier"``.
    """
    _check_choice(method, METHODS[1:], "delay method")
    if method == "taps" and not delay_kernels.available():
        return 1.01 * estimate_cost(
            "fourier", steps=steps, batch=batch, in_features=in_features, out_features=out_features,
            max_delay=max_delay, taps=taps, length=length, delays_per_synapse=delays_per_synapse,
            training=training, input_grad=input_grad, constants=constants,
        )
    forward, backward = _time_per_mac(method, taps, constants)
    macs = _macs(method, steps, batch, in_features, out_features, max_delay, taps, length, delays_per_synapse,
                 constants.transform_weight)
    narrow = 1.0 + {"dense": constants.narrow_dense, "taps": constants.narrow_taps}.get(method, 0.0) / out_features
    backward = backward * ((1.0 if input_grad else 0.5) if training else 0.0)
    return narrow * macs * (forward + backward)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def choose_method(methods: tuple = ("taps", "fourier", "dense"), **shape) -> str:
    """The cheapest of ``methods`` for a shape (keywords of :func:`estimate_cost`)."""
    return min(methods, key=lambda m: estimate_cost(m, **shape))


# ---------------------------------------------------------------------------------------------------
# Sequences


class DelayState(NamedTuple):
    """Ring buffer of the last K inputs of each presynaptic channel.

    ``buffer [K, B, C]``: slot ``(head − d) mod K`` holds the input of ``d`` steps ago (d = 1 … K−1);
    ``head`` (int64 scalar tensor) is the slot the next input is written to. :meth:`history` gives the
    last K−1 inputs oldest first, which is all that matters for the outputs.
    """

    buffer: Tensor
    head: Tensor

    def history(self) -> Tensor:
        """The last K−1 inputs ``[K−1, B, C]``, oldest first."""
        steps = self.buffer.shape[0]
        order = (self.head + 1 + torch.arange(steps - 1, device=self.buffer.device)) % steps
        return self.buffer.index_select(0, order)


def initial_delay_state(max_delay: int, batch: int, channels: int, device=None, dtype=None) -> DelayState:
    """Empty history (zeros before the first step)."""
    buffer = torch.zeros(max_delay, batch, channels, device=device, dtype=dtype or torch.get_default_dtype())
    return DelayState(buffer, torch.zeros((), dtype=torch.long, device=device))


def _state_after(state: Optional[DelayState], x: Tensor, out_steps: int, max_delay: int) -> DelayState:
    """State after a sequence: the last K−1 inputs of ``history, x, zeros(extension)``, ``head = 0``."""
    keep = max_delay - 1
    zeros = min(out_steps - x.shape[0], keep)
    recent = min(x.shape[0], keep - zeros)
    older = keep - zeros - recent
    pieces = [x.new_zeros(1 + (older if state is None else 0), *x.shape[1:])]
    if state is not None and older:
        pieces.append(state.history()[keep - older:].to(x.dtype))
    pieces += [x[x.shape[0] - recent:], x.new_zeros(zeros, *x.shape[1:])]
    return DelayState(torch.cat(pieces), torch.zeros((), dtype=torch.long, device=x.device))


def _all_zero(buffer: Tensor) -> bool:
    """Whether every value is zero (NaN is not); ``aminmax`` reads the buffer 4× faster than ``any`` on CPU."""
    if buffer.numel() == 0:
        return True
    low, high = torch.aminmax(buffer)
    return bool((low == 0) & (high == 0))


def _extended_input(x: Tensor, state: Optional[DelayState]) -> tuple[Tensor, int]:
    """``(x_ext, lead)``: the input preceded by the state's history (``lead`` = K−1 rows) or by nothing.

    An all-zero history (a network's initial state) is the same as none; on CPU it is checked and skipped,
    which saves copying the input (on CUDA the check would cost a synchronisation instead).
    """
    if state is None or (x.device.type == "cpu" and _all_zero(state.buffer)):
        return x, 0
    history = state.history().to(x.dtype)
    return torch.cat([history, x]), history.shape[0]


def _conv1d_core(x_ext: Tensor, lead: int, kernel: Tensor, out_steps: int) -> Tensor:
    """Reference: ``y[t] = Σ_d k[d] x[t − d]`` by ``conv1d`` over all K taps (official layout ``[B, C, T]``)."""
    max_delay = kernel.shape[-1]
    left = max_delay - 1 - lead
    right = out_steps + lead - x_ext.shape[0]
    padded = F.pad(x_ext.permute(1, 2, 0), (left, right))
    return F.conv1d(padded, kernel.flip(-1)).permute(2, 0, 1)


def _fourier_core(x_ext: Tensor, lead: int, kernel: Tensor, out_steps: int) -> Tensor:
    """``y[t] = Σ_d k[d] x[t − d]`` as a product of real DFTs of length ``n`` (no wrap-around in the kept steps)."""
    max_delay = kernel.shape[-1]
    n = max(x_ext.shape[0] + max_delay - 1 - lead, out_steps + lead)
    return _FourierConv.apply(x_ext, kernel, lead, out_steps, n)


@lru_cache(maxsize=32)
def _dft_matrices(n: int, in_steps: int, kernel_steps: int, lead: int, out_steps: int, dtype, device):
    """Real DFT matrices of length ``n`` with ``F = n//2 + 1`` frequencies.

    Input analysis ``[2F, L]`` (rows ``cos``, then ``−sin``), kernel analysis ``[3F, K]`` giving the three
    spectra ``C, D − C, C + D`` of Gauss's product (``C``, ``D``: real and imaginary parts), and synthesis
    ``[T_out, 2F]`` of steps ``lead … lead + T_out − 1`` (Hermitian weights 1, 2, …, 2, 1 over n).
    """
    freqs = torch.arange(n // 2 + 1, dtype=torch.float64)

    def angles(steps: Tensor) -> Tensor:
        return (2 * math.pi / n) * ((freqs[:, None] * steps) % n)

    x_angle = angles(torch.arange(in_steps, dtype=torch.float64))
    k_angle = angles(torch.arange(kernel_steps, dtype=torch.float64))
    cos_k, sin_k = torch.cos(k_angle), -torch.sin(k_angle)
    weight = torch.full_like(freqs, 2.0 / n)
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    y_angle = angles(lead + torch.arange(out_steps, dtype=torch.float64)).t()
    matrices = (
        torch.cat([torch.cos(x_angle), -torch.sin(x_angle)]),
        torch.cat([cos_k, sin_k - cos_k, cos_k + sin_k]),
        torch.cat([weight * torch.cos(y_angle), -weight * torch.sin(y_angle)], dim=1),
    )
    return tuple(m.to(dtype=dtype, device=device) for m in matrices)


_SPECTRUM_BLOCK = 1 << 21  # kernel-spectrum floats computed at a time (8 MiB in float32: stays in cache)


class _FourierConv(torch.autograd.Function):
    r"""Circular convolution of length ``n`` as DFT matrix products, all in the tensors' own layouts.

    Forward: input spectrum ``A + iB = W_x x`` (``[F, B, I]`` each); per block of frequencies the kernel
    spectra ``C``, ``E = D − C``, ``H = C + D`` (``[f, O, I]`` from ``W_k kᵀ``; ``C + iD`` is the kernel's
    spectrum) and Gauss's three real products ``k₁ = (A+B)Cᵀ``, ``k₂ = A Eᵀ``, ``k₃ = B Hᵀ`` giving
    ``Ŷ = (k₁ − k₃) + i(k₁ + k₂)``; then ``y = W_y Ŷ``. Backward applies the exact adjoints of
    these real linear maps (six products per block) and recomputes the kernel spectra instead of storing
    them. Blocking keeps the ``3F·O·I`` kernel spectra out of main memory; the transforms cost ``O(n·T)``
    per channel but run as GEMMs, which on CPU beats strided FFTs plus layout copies.
    """

    @staticmethod
    @full_precision
    def forward(ctx, x_ext, kernel, lead, out_steps, n):
        steps, batch, inputs = x_ext.shape
        outputs, _, max_delay = kernel.shape
        freqs = n // 2 + 1
        w_x, w_k, w_y = _dft_matrices(n, steps, max_delay, lead, out_steps, x_ext.dtype, x_ext.device)
        spectrum = (w_x @ x_ext.reshape(steps, -1)).view(2, freqs, batch, inputs)
        flat_kernel = kernel.reshape(-1, max_delay)
        product = x_ext.new_empty(2, freqs, batch, outputs)
        for block, rows in _frequency_blocks(freqs, outputs * inputs, w_k):
            c, e, h = (rows @ flat_kernel.t()).view(3, -1, outputs, inputs).transpose(2, 3)
            real, imag = spectrum[:, block]
            k1 = torch.bmm(real + imag, c)
            torch.sub(k1, torch.bmm(imag, h), out=product[0, block])
            torch.add(k1, torch.bmm(real, e), out=product[1, block])
        ctx.save_for_backward(spectrum, kernel)
        ctx.shape = (steps, lead, out_steps, n)
        return (w_y @ product.view(2 * freqs, -1)).view(out_steps, batch, outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        spectrum, kernel = ctx.saved_tensors
        steps, lead, out_steps, n = ctx.shape
        _, freqs, batch, inputs = spectrum.shape
        outputs, _, max_delay = kernel.shape
        w_x, w_k, w_y = _dft_matrices(n, steps, max_delay, lead, out_steps, grad_y.dtype, grad_y.device)
        grad_real, grad_imag = (w_y.t() @ grad_y.reshape(out_steps, -1)).view(2, freqs, batch, outputs)
        grad_spectrum = grad_y.new_empty(2, freqs, batch, inputs) if ctx.needs_input_grad[0] else None
        grad_kernel = grad_y.new_zeros(outputs * inputs, max_delay) if ctx.needs_input_grad[1] else None
        flat_kernel = kernel.reshape(-1, max_delay)
        for block, rows in _frequency_blocks(freqs, outputs * inputs, w_k):
            gr, gi = grad_real[block], grad_imag[block]
            gk1 = gr + gi  # Ŷr = k₁ − k₃, Ŷi = k₁ + k₂
            if grad_spectrum is not None:
                c, e, h = (rows @ flat_kernel.t()).view(3, -1, outputs, inputs)
                shared = torch.bmm(gk1, c)
                torch.baddbmm(shared, gi, e, out=grad_spectrum[0, block])
                torch.baddbmm(shared, gr, h, alpha=-1.0, out=grad_spectrum[1, block])
            if grad_kernel is not None:
                real, imag = spectrum[:, block]
                grads = grad_y.new_empty(3, gr.shape[0], outputs, inputs)
                torch.bmm(gk1.transpose(1, 2), real + imag, out=grads[0])
                torch.bmm(gi.transpose(1, 2), real, out=grads[1])
                torch.bmm(gr.transpose(1, 2), imag, out=grads[2]).neg_()
                grad_kernel.addmm_(grads.view(rows.shape[0], -1).t(), rows)
        grad_x = None
        if grad_spectrum is not None:
            grad_x = (w_x.t() @ grad_spectrum.view(2 * freqs, -1)).view(steps, batch, inputs)
        grad_k = None if grad_kernel is None else grad_kernel.view(outputs, inputs, max_delay)
        return grad_x, grad_k, None, None, None


def _frequency_blocks(freqs: int, pairs: int, w_k: Tensor):
    """``(slice of frequencies, their kernel-analysis rows [3f, K])`` in blocks of about ``_SPECTRUM_BLOCK`` floats."""
    size = max(1, min(freqs, _SPECTRUM_BLOCK // (3 * pairs)))
    rows = w_k.view(3, freqs, -1)
    for start in range(0, freqs, size):
        block = slice(start, min(freqs, start + size))
        yield block, rows[:, block].reshape(-1, rows.shape[-1])


def kernel_conv(
    x: Tensor,
    kernel: Tensor,
    *,
    length: str = "extend",
    method: str = "fourier",
    state: Optional[DelayState] = None,
) -> tuple[Tensor, DelayState]:
    """Causal convolution with a dense kernel ``[O, I, K]`` (delay order): ``"dense"`` (conv1d) or ``"fourier"``.

    Returns ``(y [T_out, B, O], state after the sequence)``.
    """
    max_delay = kernel.shape[-1]
    _check_input(x, kernel.shape[1], "kernel_conv")
    out_steps = output_length(x.shape[0], max_delay, length)
    _check_choice(method, ("dense", "fourier"), "kernel method")
    core = _conv1d_core if method == "dense" else _fourier_core
    x_ext, lead = _extended_input(x, state)
    return core(x_ext, lead, kernel, out_steps), _state_after(state, x, out_steps, max_delay)


def delay_conv_reference(
    x: Tensor,
    weight: Tensor,
    positions: Tensor,
    sigma: SigmaLike,
    max_delay: int,
    *,
    interpolation: str = "gauss",
    length: str = "extend",
    state: Optional[DelayState] = None,
) -> tuple[Tensor, DelayState]:
    """The official computation: dense Gaussian kernel, ``conv1d`` over all K taps (plain autograd)."""
    kernel = delay_kernel(weight, positions, sigma, max_delay, interpolation)
    return kernel_conv(x, kernel, length=length, method="dense", state=state)


def delay_conv(
    x: Tensor,
    weight: Tensor,
    positions: Tensor,
    sigma: SigmaLike,
    max_delay: int,
    *,
    interpolation: str = "gauss",
    length: str = "extend",
    method: str = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    state: Optional[DelayState] = None,
) -> tuple[Tensor, DelayState]:
    """Synaptic delay layer on ``x [T, B, I]`` with weights and positions ``[O, I, Q]``.

    Args:
        sigma: interpolation width σ (float or scalar tensor; not learned in DCLS).
        max_delay: K, odd; positions must lie in ``[−⌊K/2⌋, ⌊K/2⌋]``.
        interpolation: ``"gauss"`` (training, DCLS) or ``"linear"``.
        length: ``"same"`` or ``"extend"`` (T + ⌊K/2⌋ outputs).
        method: ``"dense"``, ``"fourier"``, ``"taps"`` or ``"auto"`` (module doc).
        tolerance: largest dropped gauss tap of the ``"taps"`` method, relative to |w|.
        state: history before ``x`` (zeros if ``None``).

    Returns:
        ``(y [T_out, B, O], DelayState)``; gradients flow to ``x``, ``weight`` and ``positions``.
    """
    check_max_delay(max_delay)
    _check_synapse_shapes(weight, positions)
    _check_input(x, weight.shape[1], "delay_conv")
    _check_positions(positions, max_delay)
    _check_choice(method, METHODS, "delay method")
    start, taps = tap_window(positions, sigma, max_delay, interpolation, tolerance)
    if method == "auto":
        method = choose_method(
            steps=x.shape[0], batch=x.shape[1], in_features=weight.shape[1], out_features=weight.shape[0],
            max_delay=max_delay, taps=taps, length=length, delays_per_synapse=weight.shape[2],
            training=_needs_grad(x, weight, positions), input_grad=_needs_grad(x),
        )
    if method != "taps":
        kernel = delay_kernel(weight, positions, sigma, max_delay, interpolation)
        return kernel_conv(x, kernel, length=length, method=method, state=state)
    values = _window_values(weight, positions, sigma, max_delay, interpolation, start, taps)
    return _sparse_taps(x, values, start, max_delay, length, state)


def _window_values(
    weight: Tensor, positions: Tensor, sigma: SigmaLike, max_delay: int, interpolation: str, start: Tensor, taps: int
) -> Tensor:
    """``w · ĝ_d`` for the W delays ``d = start … start + W − 1`` of every synapse ``[O, I, Q, W]``: one compiled
    pass for gauss taps on CPU (σ fixed, float32/float64), else the K taps of :func:`interpolation_taps` and a
    gather."""
    fixed_width = not (isinstance(sigma, Tensor) and sigma.requires_grad)
    compiled = delay_kernels.available() and weight.device.type == "cpu" and weight.dtype in _COMPILED_DTYPES
    if interpolation == "gauss" and fixed_width and compiled and positions.dtype == weight.dtype:
        width = abs(float(sigma)) + SIGMA_FLOOR
        floor = _tap_floor(weight.dtype)
        return delay_kernels.gauss_window(weight, positions, start, taps, width, max_delay, NORM_EPS, floor)
    window = start.unsqueeze(-1) + torch.arange(taps, device=start.device)
    return weight.unsqueeze(-1) * interpolation_taps(positions, sigma, max_delay, interpolation).gather(-1, window)


def _sparse_taps(
    x: Tensor, values: Tensor, start: Tensor, max_delay: int, length: str, state: Optional[DelayState]
) -> tuple[Tensor, DelayState]:
    """``y[t] = Σ_{i,q,j} values[o,i,q,j] · x_i[t − start[o,i,q] − j]``: compiled kernels, or a dense kernel
    through the Fourier path."""
    out_steps = output_length(x.shape[0], max_delay, length)
    x_ext, lead = _extended_input(x, state)
    if delay_kernels.available() and x.device.type == "cpu":
        y = delay_kernels.sparse_tap_conv(x_ext, values, start, lead, out_steps)
    else:
        kernel = _densify(values, start, max_delay)
        y = _fourier_core(x_ext, lead, kernel, out_steps)
    return y, _state_after(state, x, out_steps, max_delay)


def _densify(values: Tensor, start: Tensor, max_delay: int) -> Tensor:
    """Dense kernel ``[O, I, K]`` of tap values ``[O, I, Q, W]`` starting at delays ``start [O, I, Q]``."""
    out_features, in_features, count, taps = values.shape
    index = (start.unsqueeze(-1) + torch.arange(taps, device=start.device)).reshape(out_features, in_features, -1)
    kernel = values.new_zeros(out_features, in_features, max_delay)
    return kernel.scatter_add(-1, index, values.reshape(out_features, in_features, count * taps))


def integer_delay_conv(
    x: Tensor,
    weight: Tensor,
    delays: Tensor,
    max_delay: int,
    *,
    length: str = "extend",
    method: str = "auto",
    state: Optional[DelayState] = None,
) -> tuple[Tensor, DelayState]:
    r"""Integer delays :math:`y_i[t] = \sum_{j,q} w_{ijq}\, x_j[t - d_{ijq}]` on ``x [T, B, I]``.

    ``weight`` and ``delays`` (int64 in ``[0, K−1]``) are ``[O, I, Q]``. ``method``: ``"taps"`` (sparse-tap
    kernel with one tap, the work of a dense layer), ``"dense"``/``"fourier"`` (one-hot kernel) or ``"auto"``.
    Gradients flow to ``x`` and ``weight``. ``max_delay`` may be even here.
    """
    check_max_delay(max_delay, odd=False)
    _check_delays(delays, max_delay)
    _check_input(x, weight.shape[1], "integer_delay_conv")
    _check_choice(method, METHODS, "delay method")
    if method == "auto":
        method = choose_method(
            steps=x.shape[0], batch=x.shape[1], in_features=weight.shape[1], out_features=weight.shape[0],
            max_delay=max_delay, taps=1, length=length, delays_per_synapse=weight.shape[2],
            training=_needs_grad(x, weight), input_grad=_needs_grad(x),
        )
    if method == "taps":
        return _sparse_taps(x, weight.unsqueeze(-1), delays, max_delay, length, state)
    return kernel_conv(x, one_hot_kernel(weight, delays, max_delay), length=length, method=method, state=state)


def integer_delay_lif(
    x: Tensor,
    weight: Tensor,
    delays: Tensor,
    max_delay: int,
    lif_state: LIFState,
    beta: Tensor,
    threshold: Union[float, Tensor] = 1.0,
    *,
    reset: str = "hard",
    scale_input: bool = False,
    surrogate: SurrogateLike = "atan",
    gain: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    length: str = "extend",
    state: Optional[DelayState] = None,
) -> Optional[tuple[Tensor, DelayState, LIFState]]:
    r"""Inference of an integer-delay layer and its LIF soma in one compiled pass, or ``None`` where it does
    not apply.

    The same values as :func:`integer_delay_conv` (``method="taps"``), then
    :math:`I_t = \mathrm{gain} \odot y_t + \mathrm{bias}` (BatchNorm with running statistics, folded), then
    :func:`spikescale.functional.lif.lif_sequence` on ``I`` from ``lif_state``:
    :math:`u_t = c I_t + \beta u_{t-1} (1 - h s_{t-1}) - \theta_{soft} s_{t-1}`, :math:`s_t = H(u_t - \theta)`
    (``reset``, ``scale_input`` and ``surrogate`` as there; the surrogate only decides whether the spike
    is the Heaviside step, which the compiled soma assumes). The delayed sums never leave the cache: each
    tile of 16 steps is summed and then run through the soma. ``gain`` and ``bias`` are ``[O]`` (default 1
    and 0).

    Applies when the compiled kernels serve ``x`` (numba, the numba LIF backend, CPU, float32/float64), no
    gradient is needed and ``x`` holds only 0 and 1; otherwise returns ``None`` and the caller runs the three
    steps. Returns ``(spikes [T_out, B, O], delay state, LIFState)``.
    """
    check_max_delay(max_delay, odd=False)
    _check_delays(delays, max_delay)
    _check_input(x, weight.shape[1], "integer_delay_lif")
    check_reset(reset)
    outputs = weight.shape[0]
    threshold = _as_threshold(threshold, x)
    affine = [t for t in (gain, bias) if t is not None]
    if _needs_grad(x, weight, beta, threshold, lif_state.u, lif_state.s, *affine):
        return None
    compiled_soma = kernel_for("lif_sequence", x, get_surrogate(surrogate)) is not None
    if not (delay_kernels.available() and compiled_soma and x.device.type == "cpu"):
        return None
    from ..kernels.numba_cpu import soma_coefficients

    gain = x.new_ones(outputs) if gain is None else gain.detach().to(x.dtype).contiguous()
    bias = x.new_zeros(outputs) if bias is None else bias.detach().to(x.dtype).contiguous()

    out_steps = output_length(x.shape[0], max_delay, length)
    x_ext, lead = _extended_input(x, state)
    soma = soma_coefficients(beta, threshold, reset, scale_input, outputs, x)
    fused = delay_kernels.spike_tap_lif(
        x_ext, weight, delays, lead, out_steps, gain, bias, soma, lif_state.u, lif_state.s
    )
    if fused is None:
        return None
    spikes, u, s = fused
    return spikes, _state_after(state, x, out_steps, max_delay), LIFState(u, s)


def depthwise_delay_conv(
    x: Tensor, taps: Tensor, *, length: str = "extend", state: Optional[DelayState] = None
) -> tuple[Tensor, DelayState]:
    """One delay line per channel: ``y_c[t] = Σ_d taps[c, d] x_c[t − d]`` for ``x [T, B, C]``, ``taps [C, K]``.

    The axonal (per presynaptic neuron) and dendritic (per postsynaptic neuron) delay kinds. Runs as a
    grouped ``conv1d`` (C·K multiply-adds per step and sample).
    """
    channels, max_delay = taps.shape
    _check_input(x, channels, "depthwise_delay_conv")
    out_steps = output_length(x.shape[0], max_delay, length)
    x_ext, lead = _extended_input(x, state)
    padded = F.pad(x_ext.permute(1, 2, 0), (max_delay - 1 - lead, out_steps + lead - x_ext.shape[0]))
    y = F.conv1d(padded, taps.flip(-1).unsqueeze(1), groups=channels).permute(2, 0, 1)
    return y, _state_after(state, x, out_steps, max_delay)


# ---------------------------------------------------------------------------------------------------
# Steps


def _push(x_t: Tensor, state: DelayState) -> tuple[DelayState, Tensor]:
    """Write ``x_t`` at ``head``; return the new state and the slots of delays ``0 … K−1`` ``[K]``."""
    steps = state.buffer.shape[0]
    buffer = state.buffer.index_copy(0, state.head.view(1), x_t.unsqueeze(0).to(state.buffer.dtype))
    slots = (state.head - torch.arange(steps, device=buffer.device)) % steps
    return DelayState(buffer, (state.head + 1) % steps), slots


def delay_step(x_t: Tensor, kernel: Tensor, state: DelayState) -> tuple[Tensor, DelayState]:
    """One step of :func:`kernel_conv`: ``y_t [B, O] = Σ_{i,d} k[o, i, d] · x_i[t − d]`` for ``x_t [B, I]``."""
    new_state, slots = _push(x_t, state)
    recent = new_state.buffer.index_select(0, slots)  # [K, B, I], delay order
    return torch.einsum("dbi,oid->bo", recent, kernel), new_state


def integer_delay_step(x_t: Tensor, weight: Tensor, delays: Tensor, state: DelayState) -> tuple[Tensor, DelayState]:
    """One step of :func:`integer_delay_conv` by gathering each synapse's delayed input from the ring buffer."""
    new_state, slots = _push(x_t, state)
    inputs = torch.arange(weight.shape[1], device=weight.device).view(1, -1, 1)
    delayed = new_state.buffer[slots[delays], :, inputs]  # [O, I, Q, B]
    return torch.einsum("oiq,oiqb->bo", weight, delayed), new_state


def depthwise_delay_step(x_t: Tensor, taps: Tensor, state: DelayState) -> tuple[Tensor, DelayState]:
    """One step of :func:`depthwise_delay_conv`: ``y_t [B, C] = Σ_d taps[c, d] x_c[t − d]``."""
    new_state, slots = _push(x_t, state)
    recent = new_state.buffer.index_select(0, slots)  # [K, B, C]
    return torch.einsum("dbc,cd->bc", recent, taps), new_state
