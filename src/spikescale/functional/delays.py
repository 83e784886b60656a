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
late spikes still arrive). Integer delays (evaluation, export) use :math:`d = h - \mathrm{clamp}(\mathrm{round}(p), -h, h)`
(round half to even, as ``torch.round``) and a one-hot kernel holding exactly :math:`w`.

Computation methods, equal up to float rounding and the stated truncation (tests):

* ``"dense"`` — the official approach and the reference: build the ``[O, I, K]`` kernel and run
  ``conv1d`` over all K taps (K × the work of a dense layer).
* ``"fft"`` — real FFT over time, one complex matrix product per frequency, inverse FFT: about
  :math:`4F/T` dense layers with :math:`F = n/2+1`, :math:`n \ge T+K-1`, whatever σ is.
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

Devices: CPU and CUDA for ``"dense"``/``"fft"``; ``"taps"`` is compiled for CPU (numba) and falls back
to an equal plain-PyTorch computation elsewhere. Autograd: all methods; the sparse-tap kernels have a
hand-written backward, checked with ``gradcheck`` in float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import delay_kernels

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
    "one_hot_kernel",
    "tap_window",
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
METHODS = ("auto", "dense", "fft", "taps")
SIGMA_FLOOR = 0.27  # built into the dcls ``gauss`` kernel: σ = 0.23 gives an effective width of 0.5 taps
NORM_EPS = 1e-7  # added to the tap sum before normalising (dcls)
DEFAULT_TOLERANCE = 1e-6

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
    steps = torch.arange(max_delay, device=positions.device, dtype=positions.dtype)
    distance = steps - delay_centres(positions, max_delay).unsqueeze(-1)
    width = sigma.abs() if isinstance(sigma, Tensor) else abs(float(sigma))
    if interpolation == "gauss":
        bump = torch.exp(-0.5 * (distance / (width + SIGMA_FLOOR)) ** 2)
    else:
        bump = torch.relu(width + 1.0 - distance.abs())
    return bump / (bump.sum(-1, keepdim=True) + NORM_EPS)


def delay_kernel(
    weight: Tensor, positions: Tensor, sigma: SigmaLike, max_delay: int, interpolation: str = "gauss"
) -> Tensor:
    """Dense kernel ``[O, I, K]`` (delay order) of synaptic weights/positions ``[O, I, Q]``: ``Σ_q w ĝ``."""
    _check_synapse_shapes(weight, positions)
    taps = interpolation_taps(positions, sigma, max_delay, interpolation)
    return torch.einsum("oiq,oiqd->oid", weight, taps)


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

# Relative time per multiply-accumulate of each method on CPU, measured with benchmarks/bench_delays.py
# --calibrate on a 2-core AMD EPYC (Zen 5) with torch 2.13: dense conv1d reaches about 3x the throughput
# of a 256-wide dense layer's GEMM, the complex GEMM of the FFT path about the same as that GEMM, and
# the compiled sparse-tap kernel about 1/2 of it. Only ratios matter.
_SECONDS_PER_MAC = {"dense": 0.33, "fft": 1.0, "taps": 2.0}
_FFT_OVERHEAD = 6.0  # transforms and copies, in units of (n·log2 n) per channel


def _fft_size(length: int) -> int:
    """Smallest n ≥ length whose prime factors are 2, 3 and 5 (fast for pocketfft and cuFFT)."""
    n = max(1, length)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def estimate_cost(
    method: str, *, steps: int, batch: int, in_features: int, out_features: int, max_delay: int,
    taps: int, length: str = "extend", delays_per_synapse: int = 1,
) -> float:
    """Estimated forward time of one delay convolution (arbitrary unit; backward scales the same way).

    ``taps`` is the window width W of the ``"taps"`` method (1 for integer delays). Without the compiled
    kernels ``"taps"`` runs as a dense kernel through the FFT and costs a little more than ``"fft"``.
    """
    _check_choice(method, METHODS[1:], "delay method")
    out_steps = output_length(steps, max_delay, length)
    pairs = in_features * out_features * batch
    if method == "dense":
        return _SECONDS_PER_MAC["dense"] * pairs * max_delay * out_steps
    n = _fft_size(steps + max_delay - 1)
    fft = _SECONDS_PER_MAC["fft"] * 4 * (n // 2 + 1) * pairs
    fft += _FFT_OVERHEAD * n * math.log2(n) * ((in_features + out_features) * batch + in_features * out_features)
    if method == "fft":
        return fft
    if not delay_kernels.available():
        return 1.01 * fft
    return _SECONDS_PER_MAC["taps"] * pairs * taps * delays_per_synapse * out_steps


def choose_method(methods: tuple = ("taps", "fft", "dense"), **shape) -> str:
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


def _extended_input(x: Tensor, state: Optional[DelayState]) -> tuple[Tensor, int]:
    """``(x_ext, lead)``: the input preceded by the state's history (``lead`` = K−1 rows) or by nothing."""
    if state is None:
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


def _fft_core(x_ext: Tensor, lead: int, kernel: Tensor, out_steps: int) -> Tensor:
    """``y[t] = Σ_d k[d] x[t − d]`` as a product of real FFTs over time (no wrap-around in the kept steps)."""
    max_delay = kernel.shape[-1]
    n = _fft_size(max(x_ext.shape[0] + max_delay - 1 - lead, out_steps + lead))
    return _FFTConv.apply(x_ext, kernel, lead, out_steps, n)


class _FFTConv(torch.autograd.Function):
    """Circular convolution of length ``n`` through rfft; both gradients are circular correlations.

    ``dL/dx = irfft(Ḡ · conj(K̂))`` and ``dL/dk = irfft(Ḡᵀ · conj(X̂))`` with ``Ḡ`` the rfft of the output
    gradient placed at the kept steps. Spectra are made contiguous ``[F, rows, channels]`` so that every
    product is one batched complex GEMM.
    """

    @staticmethod
    def forward(ctx, x_ext, kernel, lead, out_steps, n):
        spectrum_x = torch.fft.rfft(x_ext, n=n, dim=0).contiguous()  # [F, B, I]
        spectrum_k = torch.fft.rfft(kernel.permute(2, 0, 1), n=n, dim=0).contiguous()  # [F, O, I]
        product = torch.bmm(spectrum_x, spectrum_k.transpose(1, 2))  # [F, B, O]
        ctx.save_for_backward(spectrum_x, spectrum_k)
        ctx.shape = (x_ext.shape[0], kernel.shape[-1], lead, out_steps, n)
        return torch.fft.irfft(product, n=n, dim=0)[lead: lead + out_steps].contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        spectrum_x, spectrum_k = ctx.saved_tensors
        steps, max_delay, lead, out_steps, n = ctx.shape
        full = grad_y.new_zeros(n, *grad_y.shape[1:])
        full[lead: lead + out_steps] = grad_y
        spectrum_g = torch.fft.rfft(full, n=n, dim=0).contiguous()  # [F, B, O]
        grad_x = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.fft.irfft(torch.bmm(spectrum_g, spectrum_k.conj()), n=n, dim=0)[:steps]
        if ctx.needs_input_grad[1]:
            cross = torch.bmm(spectrum_g.transpose(1, 2), spectrum_x.conj())  # [F, O, I]
            grad_k = torch.fft.irfft(cross, n=n, dim=0)[:max_delay].permute(1, 2, 0)
        return grad_x, grad_k, None, None, None


def kernel_conv(
    x: Tensor,
    kernel: Tensor,
    *,
    length: str = "extend",
    method: str = "fft",
    state: Optional[DelayState] = None,
) -> tuple[Tensor, DelayState]:
    """Causal convolution with a dense kernel ``[O, I, K]`` (delay order): ``"dense"`` (conv1d) or ``"fft"``.

    Returns ``(y [T_out, B, O], state after the sequence)``.
    """
    max_delay = kernel.shape[-1]
    _check_input(x, kernel.shape[1], "kernel_conv")
    out_steps = output_length(x.shape[0], max_delay, length)
    core = {"dense": _conv1d_core, "fft": _fft_core}[_check_choice(method, ("dense", "fft"), "kernel method")]
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
        method: ``"dense"``, ``"fft"``, ``"taps"`` or ``"auto"`` (module doc).
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
        )
    if method != "taps":
        kernel = delay_kernel(weight, positions, sigma, max_delay, interpolation)
        return kernel_conv(x, kernel, length=length, method=method, state=state)
    window = start.unsqueeze(-1) + torch.arange(taps, device=start.device)
    values = weight.unsqueeze(-1) * interpolation_taps(positions, sigma, max_delay, interpolation).gather(-1, window)
    return _sparse_taps(x, values, start, max_delay, length, state)


def _sparse_taps(
    x: Tensor, values: Tensor, start: Tensor, max_delay: int, length: str, state: Optional[DelayState]
) -> tuple[Tensor, DelayState]:
    """``y[t] = Σ_{i,q,j} values[o,i,q,j] · x_i[t − start[o,i,q] − j]`` (compiled kernel, or dense + FFT)."""
    out_steps = output_length(x.shape[0], max_delay, length)
    x_ext, lead = _extended_input(x, state)
    if delay_kernels.available() and x.device.type == "cpu":
        y = delay_kernels.sparse_tap_conv(x_ext, values, start, lead, out_steps)
    else:
        kernel = _densify(values, start, max_delay)
        y = _fft_core(x_ext, lead, kernel, out_steps)
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
    kernel with one tap, the work of a dense layer), ``"dense"``/``"fft"`` (one-hot kernel) or ``"auto"``.
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
        )
    if method == "taps":
        return _sparse_taps(x, weight.unsqueeze(-1), delays, max_delay, length, state)
    return kernel_conv(x, one_hot_kernel(weight, delays, max_delay), length=length, method=method, state=state)


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
