r"""Exact time-to-first-spike (TTFS) layers: non-leaky integrate-and-fire neurons with ramp PSPs.

Model (spec ``ttfs-ssr.md`` §4). Input spike ``j`` of a sample arrives at ``t_j`` (``+∞``: silent) and
switches on a constant synaptic current ``w_ij`` (weights in potential per unit time). Neuron ``i``
has no leak and no reset, starts at ``v_i(0) = 0`` and fires at most once, at the first time its
potential reaches the threshold ``ϑ_i > 0`` inside its window (``t ≤ T``):

.. math::
    \tilde v_i(t) = \sum_j w_{ij}\,[t - t_j]_+, \qquad
    t_i = \frac{\vartheta_i + \sum_{j\in C_i} w_{ij} t_j}{\sum_{j\in C_i} w_{ij}} = \frac{\vartheta_i + P_i}{S_i},

with the causal set :math:`C_i = \{j : t_j < t_i\}`, the slope at threshold :math:`S_i > 0` and the
offset :math:`P_i`. A neuron that never reaches threshold is *silent* (``t_i = +∞``); its ``S_i, P_i``
are then the sums over every input of the window, so that :math:`\tilde v_i(T) = S_i T - P_i`.

Exact gradients (§4.5), zero for silent neurons and non-causal inputs:

.. math::
    \frac{\partial t_i}{\partial w_{ij}} = \frac{t_j - t_i}{S_i}, \qquad
    \frac{\partial t_i}{\partial t_j} = \frac{w_{ij}}{S_i}, \qquad
    \frac{\partial t_i}{\partial \vartheta_i} = \frac{1}{S_i}.

They are computed in two differentiable pieces: the causal sums ``(S, P)`` (:func:`causal_sums`, a
hand-written backward over the causal sets found in the forward pass) and :func:`spike_time`
``t = (ϑ + P)/S``, whose backward also carries the optional stabilisers (slope floor, per-neuron
gradient chopping). Regularisers that are functions of ``S`` and ``P`` (M-SSR) get their exact,
``1/S``-free gradients from the same pieces.

Back-ends (``backend=``):

* ``"numba"`` — compiled CPU loops (:mod:`._ttfs_numba`): per sample, radix-sort the input spikes of
  the window and walk them in time order, stopping each neuron at its first crossing; the causal sums
  and their backward are dense matrix products over the window minus each neuron's (short) tail of
  inputs that arrived after it fired. Memory ``O(B·(N + M))``.
* ``"torch"`` — sort → prefix sums → first crossing as ``[B, N, M_chunk]`` tensors, chunked over output
  neurons (``chunk_size``) to bound memory; runs on any device.
* ``"reference"`` — :func:`ttfs_dense_reference`, the same algorithm in one piece with plain autograd
  through the gathered prefix sums (tests, float64 checks).
* ``"auto"`` — ``numba`` for CPU tensors when numba is installed, else ``torch``.

:func:`ttfs_dense_window` is the layer-synchronous mode (§8.2): every input spike precedes the layer's
window ``[t_start, t_end]``, so every fired input is causal and ``S, P`` are two matrix products.

Devices: CPU (all back-ends), CUDA (``torch``, ``reference``, window mode). Units: times in the units
of the input encoding (``τ_in``), potentials in units of the threshold.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor
from .precision import full_precision

try:  # optional compiled back-end
    from . import _ttfs_numba
except ImportError:  # pragma: no cover - depends on the environment
    _ttfs_numba = None

__all__ = [
    "TTFS_BACKENDS",
    "CausalSet",
    "TTFSOutput",
    "LayerTrace",
    "ttfs_encode",
    "ttfs_decode",
    "ttfs_dense",
    "ttfs_dense_window",
    "ttfs_dense_reference",
    "causal_sums",
    "spike_time",
    "free_potential",
    "sorted_window",
    "resolve_backend",
    "ChopCounter",
]

TTFS_BACKENDS = ("auto", "numba", "torch", "reference")

ThresholdLike = Union[float, Tensor]


class CausalSet(NamedTuple):
    """Which inputs each neuron integrated: ``C_bi = {j : rank_bj ≤ last_bi}``.

    ``rank [B, N]``: position of input ``j`` in the sample's time order (``N`` for inputs outside the
    window or silent); ``last [B, M]``: rank of the last causal input (``-1``: none). Both ``None``
    (layer-synchronous mode): every finite input is causal.
    """

    rank: Optional[Tensor]
    last: Optional[Tensor]


class TTFSOutput(NamedTuple):
    """Result of a TTFS layer for a batch.

    Attributes:
        times: ``[B, M]`` spike times, ``+inf`` for silent neurons (differentiable).
        slope: ``[B, M]`` ``S = Σ_{j∈C} w_ij`` (differentiable).
        offset: ``[B, M]`` ``P = Σ_{j∈C} w_ij t_j`` (differentiable).
        fired: ``[B, M]`` bool.
        causal: the causal sets (:class:`CausalSet`).
        count: ``[B, M]`` number of inputs in each causal set (synaptic events an early-stopping,
            event-driven implementation processes).
    """

    times: Tensor
    slope: Tensor
    offset: Tensor
    fired: Tensor
    causal: CausalSet
    count: Tensor


class LayerTrace(NamedTuple):
    """What the regularisers receive per layer (spec §5.6)."""

    inputs: Tensor  # [B, N] input spike times (+inf: silent)
    output: TTFSOutput
    weight: Tensor  # [M, N]
    threshold: Tensor  # scalar or [M]
    t_start: float  # window start of this layer (0 for the global window)
    t_end: float  # window end T of this layer
    backend: str  # back-end for further causal sums (F-SSR)


class ChopCounter:
    """Counts (sample, neuron) pairs whose gradient was chopped (see :func:`spike_time`)."""

    def __init__(self) -> None:
        self.count = 0


# ---------------------------------------------------------------------------------------------------
# Encoding, decoding, argument checks


def ttfs_encode(x: Tensor, tau_in: float = 1.0, *, silent_zero: bool = True, offset: float = 0.0) -> Tensor:
    """Intensity-to-latency code ``t = offset + τ_in·(1 − x)`` for ``x`` in ``[0, 1]`` (any shape).

    Brighter inputs spike earlier; with ``silent_zero`` an ``x = 0`` input never spikes (``t = +∞``)
    instead of spiking at ``offset + τ_in``.
    """
    if not x.is_floating_point():
        raise ValueError(f"ttfs_encode: expected a floating-point tensor of intensities, got {x.dtype}")
    if not tau_in > 0:
        raise ValueError(f"ttfs_encode: tau_in must be > 0, got {tau_in}")
    if x.numel():
        low, high = torch.aminmax(x)
        if not (0 <= low and high <= 1):  # False for NaN too
            nan = ", NaN" if torch.isnan(x).any() else ""
            raise ValueError(f"ttfs_encode: intensities must lie in [0, 1] (got min {float(low):g}, max {float(high):g}{nan})")
    times = torch.sub(offset + tau_in, x, alpha=tau_in)  # offset + τ_in·(1 − x) in one pass
    if silent_zero:
        times.masked_fill_(x == 0, math.inf)
    return times


def ttfs_decode(times: Tensor) -> tuple[Tensor, Tensor]:
    """Class = earliest output spike (``argmin`` over the last dim, ties → lowest index).

    Returns ``(prediction [B], spiked [B])``; ``spiked`` is False when every output is silent (the
    prediction is then meaningless and must be scored as an error).
    """
    return times.argmin(-1), (times < math.inf).any(-1)


def _check_layer_args(t_in: Tensor, weight: Tensor, who: str) -> None:
    if weight.dim() != 2:
        raise ValueError(f"{who}: weight must be [out_features, in_features], got shape {tuple(weight.shape)}")
    if t_in.dim() != 2 or t_in.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{who}: expected input spike times of shape [B, {weight.shape[1]}], got {tuple(t_in.shape)}"
        )
    if not t_in.is_floating_point() or t_in.dtype != weight.dtype:
        raise ValueError(f"{who}: input times ({t_in.dtype}) and weight ({weight.dtype}) must share a float dtype")
    total = t_in.sum() if t_in.numel() else t_in.new_zeros(())
    if torch.isnan(total) or total == -math.inf:  # one pass: a NaN or a -inf input shows in the sum
        if torch.isnan(t_in).any() or (t_in == -math.inf).any():
            raise ValueError(f"{who}: input times contain NaN or -inf (silent inputs are +inf)")


def _threshold_tensor(threshold: ThresholdLike, weight: Tensor, who: str) -> Tensor:
    """``ϑ`` as a tensor (scalar or ``[M]``) on the weight's device and dtype; must be > 0."""
    theta = torch.as_tensor(threshold, dtype=weight.dtype, device=weight.device)
    if theta.dim() > 1 or (theta.dim() == 1 and theta.shape[0] != weight.shape[0]):
        raise ValueError(f"{who}: threshold must be a scalar or [{weight.shape[0]}], got shape {tuple(theta.shape)}")
    if not bool((theta > 0).all()):
        raise ValueError(f"{who}: thresholds must be > 0 (the potential starts at 0)")
    return theta


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete back-end for ``backend`` (see module doc); ``ValueError`` for unknown names."""
    if backend not in TTFS_BACKENDS:
        raise ValueError(f"unknown TTFS backend {backend!r}; expected one of {TTFS_BACKENDS}")
    if backend == "auto":
        return "numba" if (_ttfs_numba is not None and device.type == "cpu") else "torch"
    if backend == "numba":
        if _ttfs_numba is None:
            raise ImportError("backend 'numba' needs numba: pip install 'spikescale[fast]' (or use backend='torch')")
        if device.type != "cpu":
            raise ValueError(f"backend 'numba' runs on CPU tensors only, got device {device}")
    return backend


def _default_chunk(batch: int, inputs: int) -> int:
    """Output neurons per chunk so that one ``[B, N, chunk]`` tensor holds about 4 M elements."""
    return max(1, (1 << 22) // max(1, batch * inputs))


# ---------------------------------------------------------------------------------------------------
# Forward search: causal sets and (S, P) at the first crossing, no autograd


class _Search(NamedTuple):
    causal: CausalSet
    slope: Tensor
    offset: Tensor
    fired: Tensor
    order: Optional[Tensor] = None  # [B, N] inputs in time order (numba back-end)
    count: Optional[Tensor] = None  # [B] inputs inside the window (numba back-end)
    weight_t: Optional[Tensor] = None  # [N, M] contiguous transposed weights (numba back-end)
    window: Optional[Tensor] = None  # [2B, N]: see _window_matrix


def sorted_window(t_in: Tensor, t_max: float):
    """Stable time order of each sample's inputs inside the window (``t ≤ t_max``), truncated to the
    largest count: ``(ts [B, n], order [B, n], in_window [B, n], count [B], rank [B, N])``.

    ``ts`` is differentiable with respect to ``t_in``; entries past a sample's ``count`` are ``+inf``;
    ``rank`` is the position of each input in the order (``N`` outside the window)."""
    batch, inputs = t_in.shape
    valid = (t_in < math.inf) & (t_in <= t_max)  # NaN and -inf were rejected by the argument check
    ts, order = torch.sort(t_in.masked_fill(~valid, math.inf), dim=1, stable=True)
    count = valid.sum(1)
    n = int(count.max()) if batch else 0
    ts, order = ts[:, :n], order[:, :n]
    position = torch.arange(n, device=t_in.device)
    in_window = position < count[:, None]
    rank = torch.full((batch, inputs), inputs, dtype=torch.long, device=t_in.device)
    rank.scatter_(1, order, torch.where(in_window, position, inputs))
    return ts, order, in_window, count, rank


def _search_torch(t_in: Tensor, weight: Tensor, theta: Tensor, t_max: float, chunk_size: Optional[int]) -> _Search:
    batch = t_in.shape[0]
    neurons = weight.shape[0]
    ts, order, in_window, count, rank = sorted_window(t_in, t_max)
    n = ts.shape[1]
    ts0 = ts.masked_fill(~in_window, 0.0)
    # Right end of segment k: the next input time, or the window end after the last input.
    nxt = torch.cat([ts[:, 1:], ts.new_full((batch, 1), t_max)], 1)
    has_next = torch.arange(n, device=t_in.device) + 1 < count[:, None]
    right = torch.where(has_next, nxt, ts.new_tensor(t_max)).clamp(max=t_max)
    theta_m = theta.expand(neurons)
    last = torch.empty(batch, neurons, dtype=torch.long, device=t_in.device)
    slope = t_in.new_empty(batch, neurons)
    offset = t_in.new_empty(batch, neurons)
    fired = torch.empty(batch, neurons, dtype=torch.bool, device=t_in.device)
    chunk = chunk_size or _default_chunk(batch, max(n, 1))
    w_t = weight.t()
    for m0 in range(0, neurons, chunk):
        m1 = min(neurons, m0 + chunk)
        if n == 0:
            last[:, m0:m1], slope[:, m0:m1], offset[:, m0:m1], fired[:, m0:m1] = -1, 0.0, 0.0, False
            continue
        ws = w_t[:, m0:m1][order] * in_window[..., None]  # [B, n, mc] weights in time order
        s = ws.cumsum(1)
        p = (ws * ts0[..., None]).cumsum(1)
        cross = (s * right[..., None] - p >= theta_m[m0:m1]) & in_window[..., None]
        hit = cross.any(1)
        k = torch.where(hit, cross.to(torch.uint8).argmax(1), count[:, None] - 1)
        kk = k.clamp(min=0)[:, None, :]
        nonempty = k >= 0
        last[:, m0:m1] = k
        slope[:, m0:m1] = s.gather(1, kk).squeeze(1) * nonempty
        offset[:, m0:m1] = p.gather(1, kk).squeeze(1) * nonempty
        fired[:, m0:m1] = hit
    return _Search(CausalSet(rank, last), slope, offset, fired)


def _search_numba(t_in: Tensor, weight: Tensor, theta: Tensor, t_max: float) -> _Search:
    batch, inputs = t_in.shape
    neurons = weight.shape[0]
    dtype = t_in.dtype
    t_np = t_in.detach().contiguous()
    w_t = weight.detach().t().contiguous()
    theta_m = theta.detach().expand(neurons).contiguous()
    order = torch.empty(batch, inputs, dtype=torch.long)
    rank = torch.empty(batch, inputs, dtype=torch.long)
    count = torch.empty(batch, dtype=torch.long)
    last = torch.empty(batch, neurons, dtype=torch.long)
    slope = torch.empty(batch, neurons, dtype=dtype)
    offset = torch.empty(batch, neurons, dtype=dtype)
    fired = torch.empty(batch, neurons, dtype=torch.bool)
    window = torch.empty(2 * batch, inputs, dtype=dtype)
    scalar = t_np.numpy().dtype.type(t_max)
    _ttfs_numba.search(
        t_np.numpy(), _ttfs_numba.float_bits(t_np), w_t.numpy(), theta_m.numpy(), scalar, order.numpy(),
        rank.numpy(), count.numpy(), last.numpy(), slope.numpy(), offset.numpy(), fired.numpy(), window.numpy(),
    )
    return _Search(CausalSet(rank, last), slope, offset, fired, order, count, w_t, window)


# ---------------------------------------------------------------------------------------------------
# Differentiable pieces: causal sums and the spike time


def _causal_mask(causal: CausalSet, m0: int, m1: int) -> Tensor:
    """``[B, m1-m0, N]`` bool: input ``j`` is in the causal set of neuron ``i``."""
    return causal.rank[:, None, :] <= causal.last[:, m0:m1, None]


def _window_matrix(t_in: Tensor, inside: Tensor) -> Tensor:
    """``[2B, N]``: rows ``0..B-1`` the in-window mask ``f`` (1.0 / 0.0), rows ``B..2B-1`` the times
    with inputs outside the window set to 0 (``t₀``), so that ``[f; t₀]`` enters one matrix product."""
    return torch.cat([inside.to(t_in.dtype), t_in.masked_fill(~inside, 0.0)])


class _CausalSums(torch.autograd.Function):
    """``(A, B) = (Σ_{j∈C} v_ij, Σ_{j∈C} v_ij t_j)`` with the hand-written backward of the module doc."""

    @staticmethod
    @full_precision
    def forward(ctx, t_in, values, rank, last, backend, found):
        window = found.window if found is not None and found.window is not None else _window_matrix(t_in, rank < t_in.shape[1])
        if backend == "numba":  # time order and transposed values, shared with the backward pass
            if found is None:
                ctx.numba = (*_order_and_count(rank), values.detach().t().contiguous())
            else:
                ctx.numba = (found.order, found.count, found.weight_t)
        if found is not None:  # (A, B) already computed by the forward search
            a, b = found.slope, found.offset
        elif backend == "numba":
            a, b = _causal_forward_numba(window, values, last, *ctx.numba)
        else:
            a, b = _causal_forward_torch(window[t_in.shape[0]:], values, CausalSet(rank, last))
        ctx.backend = backend
        ctx.save_for_backward(window, values, rank, last)
        return a, b

    @staticmethod
    @full_precision
    def backward(ctx, grad_a, grad_b):
        window, values, rank, last = ctx.saved_tensors
        if ctx.backend == "numba":
            dv, dt = _causal_backward_numba(window, values, last, grad_a, grad_b, *ctx.numba, ctx.needs_input_grad[0])
        else:
            t0 = window[rank.shape[0]:]
            dv, dt = _causal_backward_torch(t0, values, CausalSet(rank, last), grad_a, grad_b)
        return (dt if ctx.needs_input_grad[0] else None), (dv if ctx.needs_input_grad[1] else None), None, None, None, None


def _order_and_count(rank: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of ``rank``: ``order [B, N]`` (inputs in time order, then padding) and ``count [B]``."""
    batch, inputs = rank.shape
    order = torch.zeros(batch, inputs + 1, dtype=torch.long, device=rank.device)
    order.scatter_(1, rank, torch.arange(inputs, device=rank.device).expand(batch, inputs))
    return order[:, :inputs].contiguous(), (rank < inputs).sum(1)


def _causal_forward_numba(window, values, last, order, count, values_t) -> tuple[Tensor, Tensor]:
    """Dense sums over the window (one product) minus each neuron's tail (compiled loop)."""
    batch = last.shape[0]
    sums = window @ values.t()  # [2B, M]: Σ_j f_bj v_ij and Σ_j t₀_bj v_ij
    a, b = sums[:batch], sums[batch:]
    _ttfs_numba.subtract_tails(
        window[batch:].numpy(), order.numpy(), count.numpy(), last.contiguous().numpy(), values_t.numpy(), a.numpy(), b.numpy()
    )
    return a, b


def _causal_backward_numba(window, values, last, grad_a, grad_b, order, count, values_t, need_dt) -> tuple[Tensor, Tensor]:
    """Dense vector-Jacobian products over the window (matrix products) minus the tails (compiled loop)."""
    batch = last.shape[0]
    dv_t = window.t() @ torch.cat([grad_a, grad_b])  # [N, M]: Σ_b f_bj dA_bi + t₀_bj dB_bi
    tail_dt = _ttfs_numba.subtract_tail_gradients(
        window[batch:].numpy(), order.numpy(), count.numpy(), last.contiguous().numpy(), values_t.numpy(),
        grad_a.contiguous().numpy(), grad_b.contiguous().numpy(), dv_t.numpy(),
    )
    dt = (grad_b @ values).mul_(window[:batch]).sub_(torch.from_numpy(tail_dt)) if need_dt else None
    return dv_t.t(), dt


def _causal_forward_torch(t0: Tensor, values: Tensor, causal: CausalSet) -> tuple[Tensor, Tensor]:
    batch, inputs = t0.shape
    neurons = values.shape[0]
    a, b = t0.new_empty(batch, neurons), t0.new_empty(batch, neurons)
    chunk = _default_chunk(batch, inputs)
    for m0 in range(0, neurons, chunk):
        m1 = min(neurons, m0 + chunk)
        mask = _causal_mask(causal, m0, m1).to(t0.dtype)  # [B, mc, N]
        a[:, m0:m1] = torch.einsum("bin,in->bi", mask, values[m0:m1])
        b[:, m0:m1] = torch.einsum("bin,in->bi", mask * t0[:, None, :], values[m0:m1])
    return a, b


def _causal_backward_torch(t0, values, causal, grad_a, grad_b) -> tuple[Tensor, Tensor]:
    batch, inputs = t0.shape
    neurons = values.shape[0]
    dv = torch.empty_like(values)
    dt = torch.zeros_like(t0)
    chunk = _default_chunk(batch, inputs)
    for m0 in range(0, neurons, chunk):
        m1 = min(neurons, m0 + chunk)
        mask = _causal_mask(causal, m0, m1).to(t0.dtype)
        per_pair = grad_a[:, m0:m1, None] + grad_b[:, m0:m1, None] * t0[:, None, :]
        dv[m0:m1] = (mask * per_pair).sum(0)
        dt += torch.einsum("bin,bi,in->bn", mask, grad_b[:, m0:m1], values[m0:m1])
    return dv, dt


def causal_sums(
    t_in: Tensor, values: Tensor, causal: CausalSet, *, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Differentiable ``(Σ_{j∈C_bi} v_ij, Σ_{j∈C_bi} v_ij t_bj)``, each ``[B, M]``, for ``values [M, N]``.

    With ``causal.rank is None`` (layer-synchronous mode) every finite input is causal and the sums are
    two matrix products. Used for ``(S, P)`` with ``values = W`` and by F-SSR with ``values = [W]_+``.
    """
    if causal.rank is None:
        sums = _window_matrix(t_in, t_in < math.inf) @ values.t()
        return sums[: t_in.shape[0]], sums[t_in.shape[0]:]
    backend = resolve_backend(backend, t_in.device)
    backend = "torch" if backend == "reference" else backend
    return _CausalSums.apply(t_in, values, causal.rank, causal.last, backend, None)


class _SpikeTime(torch.autograd.Function):
    @staticmethod
    @full_precision
    def forward(ctx, threshold, slope, offset, fired, slope_floor, max_dw, t_first, counter):
        safe = torch.where(fired, slope, 1.0)
        times = torch.where(fired, (threshold + offset) / safe, math.inf)
        ctx.slope_floor, ctx.max_dw, ctx.counter = slope_floor, max_dw, counter
        ctx.theta_shape = threshold.shape
        ctx.save_for_backward(safe, times, fired, t_first)
        return times

    @staticmethod
    @full_precision
    def backward(ctx, grad):
        safe, times, fired, t_first = ctx.saved_tensors
        g = torch.where(fired, grad, 0.0)
        finite_t = torch.where(fired, times, 0.0)
        denom = safe.clamp(min=ctx.slope_floor) if ctx.slope_floor > 0 else safe
        if ctx.max_dw is not None:
            # Largest |dL/dw_ij| of this (sample, neuron) is |g|·(t_i − earliest input)/S_i.
            chop = fired & (g.abs() * (finite_t - t_first[:, None]) / denom > ctx.max_dw)
            g = g.masked_fill(chop, 0.0)
            if ctx.counter is not None:
                ctx.counter.count += int(chop.sum())
        q = g / denom
        d_theta = None
        if ctx.needs_input_grad[0]:
            d_theta = q.sum(0) if len(ctx.theta_shape) else q.sum()
            d_theta = d_theta.reshape(ctx.theta_shape)
        return d_theta, -q * finite_t, q, None, None, None, None, None


def spike_time(
    threshold: Tensor,
    slope: Tensor,
    offset: Tensor,
    fired: Tensor,
    *,
    slope_floor: float = 0.0,
    max_dw: Optional[float] = None,
    t_first: Optional[Tensor] = None,
    counter: Optional[ChopCounter] = None,
) -> Tensor:
    r"""``t = (ϑ + P)/S`` where ``fired``, ``+inf`` elsewhere, with NaN-free gradients.

    The division uses a sanitised denominator, so silent neurons get exactly zero gradient. Optional
    stabilisers act on the backward pass only (the forward value is exact):

    * ``slope_floor`` ε: divide by ``max(S, ε)`` in the backward (bounds the ``1/S`` blow-up).
    * ``max_dw``: per-neuron gradient chopping (Göltz et al., fastAndDeep): for each (sample, neuron),
      if the largest weight gradient :math:`|g_i|(t_i - t_{first})/S_i` exceeds ``max_dw``, that
      neuron's gradient for that sample is set to zero (for its weights *and* its inputs).
      ``t_first [B]`` is the earliest input time of each sample; ``counter`` counts chopped pairs.
    """
    if max_dw is not None and t_first is None:
        raise ValueError("spike_time: max_dw needs t_first, the earliest input time of each sample")
    if t_first is None:
        t_first = slope.new_zeros(slope.shape[0])
    return _SpikeTime.apply(threshold, slope, offset, fired, float(slope_floor), max_dw, t_first, counter)


def _first_input(t_in: Tensor) -> Tensor:
    first = t_in.detach().min(1).values if t_in.shape[1] else t_in.new_zeros(t_in.shape[0])
    return torch.where(torch.isfinite(first), first, torch.zeros_like(first))


# ---------------------------------------------------------------------------------------------------
# Layers


def ttfs_dense(
    t_in: Tensor,
    weight: Tensor,
    threshold: ThresholdLike = 1.0,
    t_max: float = math.inf,
    *,
    backend: str = "auto",
    chunk_size: Optional[int] = None,
    slope_floor: float = 0.0,
    max_dw: Optional[float] = None,
    counter: Optional[ChopCounter] = None,
) -> TTFSOutput:
    """Exact first-spike times of a dense TTFS layer with a global window ``[0, t_max]``.

    Args:
        t_in: ``[B, N]`` input spike times (``+inf``: silent). Inputs after ``t_max`` are ignored.
        weight: ``[M, N]`` (``nn.Linear`` layout), same dtype as ``t_in``.
        threshold: ``ϑ > 0``, a scalar or ``[M]`` (may require grad).
        t_max: window end; a neuron that has not crossed by ``t_max`` is silent.
        backend: ``"auto"``, ``"numba"``, ``"torch"`` or ``"reference"`` (module doc).
        chunk_size: output neurons per chunk for the ``torch`` back-end.
        slope_floor, max_dw, counter: backward stabilisers of :func:`spike_time`.

    Returns:
        :class:`TTFSOutput`; ``times``, ``slope`` and ``offset`` are differentiable with respect to
        ``t_in``, ``weight`` and ``threshold``.
    """
    _check_layer_args(t_in, weight, "ttfs_dense")
    theta = _threshold_tensor(threshold, weight, "ttfs_dense")
    backend = resolve_backend(backend, t_in.device)
    if backend == "reference":
        return ttfs_dense_reference(t_in, weight, theta, t_max)
    with torch.no_grad():
        if backend == "numba":
            found = _search_numba(t_in, weight, theta, t_max)
        else:
            found = _search_torch(t_in, weight, theta, t_max, chunk_size)
    slope, offset = _CausalSums.apply(t_in, weight, found.causal.rank, found.causal.last, backend, found)
    times = spike_time(
        theta, slope, offset, found.fired, slope_floor=slope_floor, max_dw=max_dw,
        t_first=_first_input(t_in) if max_dw is not None else None, counter=counter,
    )
    return TTFSOutput(times, slope, offset, found.fired, found.causal, found.causal.last + 1)


def ttfs_dense_reference(t_in: Tensor, weight: Tensor, threshold: ThresholdLike = 1.0, t_max: float = math.inf) -> TTFSOutput:
    """Reference: sort → prefix sums → first crossing in one piece, gradients by plain autograd through
    the gathered prefix sums (spec §8.1). Memory ``O(B·N·M)``; use float64 for checks."""
    _check_layer_args(t_in, weight, "ttfs_dense_reference")
    theta = _threshold_tensor(threshold, weight, "ttfs_dense_reference").expand(weight.shape[0])
    batch = t_in.shape[0]
    ts, order, in_window, count, rank = sorted_window(t_in, t_max)
    if ts.shape[1] == 0:  # no input inside the window: every neuron is silent
        zeros = t_in.new_zeros(batch, weight.shape[0])
        last = torch.full_like(zeros, -1, dtype=torch.long)
        return TTFSOutput(zeros + math.inf, zeros, zeros, last >= 0, CausalSet(rank, last), last + 1)
    ts0 = ts.masked_fill(~in_window, 0.0)
    ws = weight.t()[order] * in_window[..., None]
    s = ws.cumsum(1)
    p = (ws * ts0[..., None]).cumsum(1)
    with torch.no_grad():
        nxt = torch.cat([ts[:, 1:], ts.new_full((batch, 1), t_max)], 1)
        has_next = torch.arange(ts.shape[1], device=ts.device) + 1 < count[:, None]
        right = torch.where(has_next, nxt, ts.new_tensor(t_max)).clamp(max=t_max)
        cross = (s * right[..., None] - p >= theta) & in_window[..., None]
        fired = cross.any(1)
        last = torch.where(fired, cross.to(torch.uint8).argmax(1), count[:, None] - 1)
    kk = last.clamp(min=0)[:, None, :]
    nonempty = (last >= 0).to(s.dtype)
    slope = s.gather(1, kk).squeeze(1) * nonempty
    offset = p.gather(1, kk).squeeze(1) * nonempty
    safe = torch.where(fired, slope, torch.ones_like(slope))
    times = torch.where(fired, (theta + offset) / safe, torch.full_like(slope, math.inf))
    return TTFSOutput(times, slope, offset, fired, CausalSet(rank, last), last + 1)


def ttfs_dense_window(
    t_in: Tensor,
    weight: Tensor,
    threshold: ThresholdLike = 1.0,
    t_start: float = 1.0,
    t_end: float = 2.0,
    *,
    slope_floor: float = 0.0,
    max_dw: Optional[float] = None,
    counter: Optional[ChopCounter] = None,
) -> TTFSOutput:
    r"""Layer-synchronous TTFS layer (spec §8.2): the layer may fire only in ``[t_start, t_end]`` and
    every finite input is assumed to arrive before ``t_start`` (so it is causal).

    ``S = f Wᵀ`` and ``P = t₀ Wᵀ`` (``f``: fired-input mask, ``t₀``: times with silent inputs set to 0)
    are two matrix products, no sorting. A neuron whose potential ``S·t_start − P`` already reaches
    ``ϑ`` fires at ``t_start`` (no gradient through that time); otherwise it fires at ``(ϑ + P)/S`` if
    that lies in the window (``S > 0``), else it is silent.
    """
    _check_layer_args(t_in, weight, "ttfs_dense_window")
    if not t_end > t_start:
        raise ValueError(f"ttfs_dense_window: need t_end > t_start, got [{t_start}, {t_end}]")
    theta = _threshold_tensor(threshold, weight, "ttfs_dense_window")
    causal = CausalSet(None, None)
    slope, offset = causal_sums(t_in, weight, causal)
    with torch.no_grad():
        early = slope * t_start - offset >= theta
        inside = (slope > 0) & (theta + offset <= slope * t_end) & ~early
    times = spike_time(
        theta, slope, offset, inside, slope_floor=slope_floor, max_dw=max_dw,
        t_first=_first_input(t_in) if max_dw is not None else None, counter=counter,
    )
    times = torch.where(early, torch.full_like(times, t_start), times)
    count = (t_in < math.inf).sum(1, keepdim=True).expand_as(times)
    return TTFSOutput(times, slope, offset, early | inside, causal, count)


def free_potential(t_in: Tensor, weight: Tensor, t: float) -> Tensor:
    """Un-reset potential ``ṽ_i(t) = Σ_j w_ij [t − t_j]_+`` over *all* inputs, ``[B, M]`` (one product)."""
    return (t - t_in).clamp(min=0.0) @ weight.t()  # silent inputs: (t − ∞) clamps to 0
