r"""Learnable synaptic delays (DCLS, spec delays): the delay layer, the faithful block, readout and σ schedule.

* :class:`DelayedDense` — weights and real delay positions on ``[T, B, C]``: Gaussian (or linear)
  interpolated kernels while training, rounded integer delays with one-hot kernels in evaluation (computed
  on the fly, the parameters are never touched), export of ``(weight, delay)`` pairs, streaming steps.
  Kinds: ``"synaptic"`` (a delay per synapse, ``delays_per_synapse`` of them), ``"axonal"`` (one per input
  neuron) and ``"dendritic"`` (one per output neuron). Ablations (``delays=``): ``"learned"``, ``"fixed"``
  (random, rounded and frozen), ``"none"`` (a plain linear map) and ``"dense"`` (all K taps learned).
* :class:`DelayBlock` — the faithful hidden block: delay → BatchNorm over (T·B) → LIF (τ in steps, θ = 1,
  hard detached reset, unscaled input) → dropout on spikes with one mask per sample and neuron.
* :class:`DelayReadout` — delay → non-firing LIF (a leaky integrator with the same τ, unscaled input).
* :class:`SigmaSchedule` — σ from ⌊K/2⌋ down to 0.23 geometrically over the first quarter of training.
* :func:`build_delay_network`, :func:`clamp_positions_`, :func:`set_eval_delays`, :func:`export_delays`.

Training-loop duties. :class:`DelayedDense` implements the two hooks that spikescale's trainer calls on
every sub-module: ``on_train_epoch_start(epoch, epochs)`` sets σ from its schedule and
``after_optimizer_step()`` clamps the positions (and advances a per-step σ decay). A hand-written loop
calls ``SigmaSchedule(K, epochs).apply(model, epoch)`` before each epoch and ``clamp_positions_(model)``
after each step. ``param_groups(model, lr, position_lr_scale=100)`` gives positions their own group.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import delays as fd
from ..functional.delays import _check_choice as _choice
from ..functional.lif import LIFState, lif_sequence, lif_step
from ..functional.scan import linear_recurrence, linear_step
from ..functional.surrogate import SurrogateLike
from .base import Soma, SpikingLayer, check_sequence, check_step
from .layers import _check_sizes
from .network import Network
from .timing import TimingFactor

__all__ = [
    "DELAY_KINDS",
    "DELAY_MODES",
    "EVAL_DELAYS",
    "DelayedDense",
    "DelayBlock",
    "DelayBlockState",
    "DelayReadout",
    "DelayReadoutState",
    "SigmaSchedule",
    "build_delay_network",
    "clamp_positions_",
    "set_eval_delays",
    "export_delays",
]

DELAY_KINDS = ("synaptic", "axonal", "dendritic")
DELAY_MODES = ("learned", "fixed", "none", "dense")
EVAL_DELAYS = ("integer", "interpolated")


class DelayedDense(nn.Module):
    r"""Delay layer ``x [T, B, in] → y [T_out, B, out]`` (equations in :mod:`spikescale.functional.delays`).

    Args:
        in_features, out_features: presynaptic and postsynaptic neurons.
        max_delay: K, the number of taps (odd): delays 0 … K−1 steps (SHD: 25, SSC/GSC: 31 at 10 ms).
        delays_per_synapse: Q (dcls ``kernel_count``), synaptic kind only.
        kind: ``"synaptic"`` (positions ``[out, in, Q]``), ``"axonal"`` (``[in]``) or ``"dendritic"``
            (``[out]``); axonal delays each input line then applies the weights, dendritic the reverse.
        interpolation: ``"gauss"`` (DCLS) or ``"linear"``.
        delays: ``"learned"``, ``"fixed"`` (random integer delays, frozen), ``"none"`` (``W x_t``, no
            padding, ``length`` is ignored) or ``"dense"`` (a learned ``[out, in, K]`` temporal kernel).
        length: ``"extend"`` (official: T + ⌊K/2⌋ outputs) or ``"same"``.
        sigma: initial σ (default ⌊K/2⌋, the schedule's start); a buffer set by :class:`SigmaSchedule`.
        method: ``"auto"``, ``"dense"``, ``"fourier"`` or ``"taps"`` (see the functional module).
        tolerance: largest dropped gauss tap of the ``"taps"`` method, relative to |w|.
        eval_delays: ``"integer"`` (official evaluation: rounded positions, one-hot kernels) or
            ``"interpolated"`` (the training kernel) in ``eval()`` mode.
        sigma_schedule: ``True`` (the DCLS schedule from ``sigma`` down to 0.23 over the first quarter of the
            epochs, driven by the trainer hook), ``False`` (σ stays as set) or a mapping of
            :class:`SigmaSchedule` options (``end``, ``fraction``, ``steps_per_epoch``).
        faithful: draw initial positions as the official code, uniform on ``[-K//2, K//2]`` with Python's
            floor division (``[-13, 12]`` for K = 25) and then clamped, which puts a little extra mass on the
            largest delay; otherwise uniform on ``[-⌊K/2⌋, ⌊K/2⌋]``.
        generator: random generator for the initial weights and positions.

    Weights are Kaiming-uniform with ReLU gain, ``bound = √(6 / fan_in)`` with ``fan_in = in·Q`` (``in·K``
    for ``"dense"``); there is no bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int = 25,
        *,
        delays_per_synapse: int = 1,
        kind: str = "synaptic",
        interpolation: str = "gauss",
        delays: str = "learned",
        length: str = "extend",
        sigma: Optional[float] = None,
        method: str = "auto",
        tolerance: float = fd.DEFAULT_TOLERANCE,
        eval_delays: str = "integer",
        sigma_schedule: Union[bool, Mapping[str, Any]] = True,
        faithful: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        self.mode = _choice(delays, DELAY_MODES, "delay mode")
        self.max_delay = fd.check_max_delay(max_delay, odd=self.mode in ("learned", "fixed"))
        self.kind = _choice(kind, DELAY_KINDS, "delay kind")
        self.interpolation = _choice(interpolation, fd.INTERPOLATIONS, "interpolation")
        self.length = _choice(length, fd.LENGTHS, "output length")
        self.method = _choice(method, fd.METHODS, "delay method")
        self.eval_delays = _choice(eval_delays, EVAL_DELAYS, "eval_delays")
        if not isinstance(delays_per_synapse, int) or delays_per_synapse < 1:
            raise ValueError(f"delays_per_synapse must be an integer >= 1, got {delays_per_synapse!r}")
        if delays_per_synapse > 1 and (kind != "synaptic" or self.mode in ("none", "dense")):
            raise ValueError("delays_per_synapse > 1 needs kind='synaptic' with learned or fixed delays")
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
        self.in_features, self.out_features = in_features, out_features
        self.delays_per_synapse = delays_per_synapse
        self.tolerance = float(tolerance)
        self.faithful = bool(faithful)
        half = self.max_delay // 2
        self.register_buffer("sigma", torch.tensor(float(half if sigma is None else sigma)))
        self.sigma_schedule = _schedule_options(sigma_schedule, sigma)
        if self.sigma_schedule is not None and self.mode == "learned":
            try:  # check the options now, not at the first epoch
                SigmaSchedule(self.max_delay, 4, **self.sigma_schedule)
            except ValueError as err:
                raise ValueError(f"{err} (sigma_schedule=False keeps σ constant)") from None
        self._schedule: Optional[SigmaSchedule] = None
        self._epoch = self._steps = 0
        self.weight = nn.Parameter(self._initial_weight(generator))
        self.positions: Optional[nn.Parameter] = None
        if self.mode in ("learned", "fixed"):
            self.positions = nn.Parameter(self._initial_positions(generator))
            if self.mode == "fixed":
                self.freeze_delays()

    # -- construction ------------------------------------------------------------------------------

    def _initial_weight(self, generator) -> Tensor:
        shape = {
            "dense": (self.out_features, self.in_features, self.max_delay),
            "none": (self.out_features, self.in_features),
        }.get(self.mode)
        if shape is None:
            shape = (self.out_features, self.in_features)
            if self.kind == "synaptic":
                shape += (self.delays_per_synapse,)
        fan_in = math.prod(shape[1:])
        bound = math.sqrt(6.0 / fan_in)
        return torch.empty(shape).uniform_(-bound, bound, generator=generator)

    def _initial_positions(self, generator) -> Tensor:
        shape = {
            "synaptic": (self.out_features, self.in_features, self.delays_per_synapse),
            "axonal": (self.in_features,),
            "dendritic": (self.out_features,),
        }[self.kind]
        half = self.max_delay // 2
        low = (-self.max_delay) // 2 if self.faithful else -half
        return (low + (half - low) * torch.rand(shape, generator=generator)).clamp(-half, half)

    # -- delays --------------------------------------------------------------------------------------

    @property
    def uses_integer_delays(self) -> bool:
        """Whether the next forward uses rounded delays and one-hot kernels."""
        return self.mode == "fixed" or (self.mode == "learned" and not self.training and self.eval_delays == "integer")

    def set_sigma(self, sigma: float) -> None:
        """Set the interpolation width σ (shared, not learned)."""
        self.sigma.fill_(float(sigma))

    @torch.no_grad()
    def clamp_positions_(self) -> None:
        """Clamp the positions to ``[−⌊K/2⌋, ⌊K/2⌋]``; call after every optimiser step."""
        if self.positions is not None:
            half = self.max_delay // 2
            self.positions.clamp_(-half, half)

    def on_train_epoch_start(self, epoch: int, epochs: int) -> None:
        """Trainer hook: set σ for ``epoch`` (completed epochs) of ``epochs`` from the schedule."""
        if self.sigma_schedule is None or self.mode != "learned":
            return
        self._schedule = SigmaSchedule(self.max_delay, epochs, **self.sigma_schedule)
        self._epoch, self._steps = epoch, 0
        self.set_sigma(self._schedule.value(epoch))

    def after_optimizer_step(self) -> None:
        """Trainer hook: clamp the positions; advance σ when it decays per step (counted from the epoch start)."""
        self.clamp_positions_()
        if self._schedule is not None and self._schedule.steps_per_epoch:
            self._steps += 1
            self.set_sigma(self._schedule.value(self._epoch, self._steps))

    def integer_delays(self) -> Tensor:
        """Rounded delays in steps (int64, the shape of the positions); the parameters are untouched."""
        if self.positions is None:
            raise ValueError(f"a DelayedDense with delays={self.mode!r} has no delay positions")
        return fd.integer_delays(self.positions, self.max_delay)

    @torch.no_grad()
    def round_(self) -> None:
        """Round the positions in place (to the integer delays the evaluation uses)."""
        if self.positions is not None:
            half = self.max_delay // 2
            self.positions.copy_(torch.round(self.positions).clamp(-half, half))

    def freeze_delays(self) -> None:
        """Round the positions, stop learning them and use integer delays from now on (``delays="fixed"``)."""
        self.round_()
        if self.positions is not None:
            self.positions.requires_grad_(False)
            self.mode = "fixed"

    def fan_out(self) -> int:
        """Accumulate operations per input event once the delays are integers (a dense kernel: K per target)."""
        if self.mode == "dense":
            return self.out_features * self.max_delay
        return self.out_features * (self.delays_per_synapse if self.kind == "synaptic" else 1)

    def export(self) -> dict[str, Any]:
        """Deployment form: ``weight``, integer ``delay`` (steps, the evaluation's rounding), ``max_delay``, ``kind``.

        Synaptic: ``weight``/``delay`` ``[out, in, Q]``; axonal: ``weight [out, in]``, ``delay [in]``;
        dendritic: ``delay [out]``. ``"none"`` exports zero delays; ``"dense"`` exports its ``kernel [out, in, K]``.
        """
        entry: dict[str, Any] = {"kind": self.kind, "max_delay": self.max_delay, "mode": self.mode}
        weight = self.weight.detach().clone()
        if self.mode == "dense":
            entry["kernel"] = weight
        elif self.mode == "none":
            entry.update(weight=weight, delay=torch.zeros(weight.shape, dtype=torch.long, device=weight.device))
        else:
            entry.update(weight=weight, delay=self.integer_delays())
        return entry

    # -- kernels -------------------------------------------------------------------------------------

    def _line_taps(self) -> Tensor:
        """Per-line taps ``[C, K]`` of the axonal/dendritic kinds (one-hot for integer delays)."""
        if self.uses_integer_delays:
            return F.one_hot(self.integer_delays(), self.max_delay).to(self.weight.dtype)
        return fd.interpolation_taps(self.positions, self.sigma, self.max_delay, self.interpolation)

    def kernel(self) -> Tensor:
        """The effective dense kernel ``[out, in, K]`` in delay order (what the layer computes)."""
        if self.mode == "dense":
            return self.weight
        if self.mode == "none":
            return F.pad(self.weight.unsqueeze(-1), (0, self.max_delay - 1))
        if self.kind == "synaptic":
            if self.uses_integer_delays:
                return fd.one_hot_kernel(self.weight, self.integer_delays(), self.max_delay)
            return fd.delay_kernel(self.weight, self.positions, self.sigma, self.max_delay, self.interpolation)
        taps = self._line_taps()
        return self.weight.unsqueeze(-1) * (taps.unsqueeze(0) if self.kind == "axonal" else taps.unsqueeze(1))

    # -- computation ---------------------------------------------------------------------------------

    def initial_state(self, batch: int, device=None, dtype=None) -> Optional[fd.DelayState]:
        """Empty ring buffer over the delayed channels (outputs for dendritic delays); ``None`` without delays."""
        if self.mode == "none":
            return None
        channels = self.out_features if self.kind == "dendritic" and self.mode != "dense" else self.in_features
        return fd.initial_delay_state(self.max_delay, batch, channels, device, dtype)

    def forward(self, x: Tensor, state: Optional[fd.DelayState] = None) -> tuple[Tensor, Optional[fd.DelayState]]:
        """Process ``x [T, B, in]``; returns ``(y [T_out, B, out], state)``."""
        check_sequence(x, self.in_features, type(self).__name__)
        return self.project(x, state)

    def step(self, x: Tensor, state: Optional[fd.DelayState] = None) -> tuple[Tensor, Optional[fd.DelayState]]:
        """Process one step ``x [B, in]``; returns ``(y [B, out], state)``."""
        check_step(x, self.in_features, type(self).__name__)
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        return self.project_step(x, state)

    def _method(self, x: Tensor, taps: int, methods: tuple = ("taps", "fourier", "dense")) -> str:
        if self.method != "auto" and self.method in methods:
            return self.method
        return fd.choose_method(
            methods, steps=x.shape[0], batch=x.shape[1], in_features=self.in_features,
            out_features=self.out_features, max_delay=self.max_delay, taps=taps, length=self.length,
            delays_per_synapse=self.delays_per_synapse,
            training=torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad),
            input_grad=torch.is_grad_enabled() and x.requires_grad,
        )

    def project(self, x: Tensor, state: Optional[fd.DelayState] = None) -> tuple[Tensor, Optional[fd.DelayState]]:
        """:meth:`forward` without the input checks (used by the blocks that already checked)."""
        if self.mode == "none":
            return F.linear(x, self.weight), state
        if self.mode == "dense":
            method = self._method(x, self.max_delay, ("fourier", "dense"))
            return fd.kernel_conv(x, self.weight, length=self.length, method=method, state=state)
        if self.kind == "axonal":
            delayed, state = fd.depthwise_delay_conv(x, self._line_taps(), length=self.length, state=state)
            return F.linear(delayed, self.weight), state
        if self.kind == "dendritic":
            return fd.depthwise_delay_conv(F.linear(x, self.weight), self._line_taps(), length=self.length, state=state)
        if self.uses_integer_delays:
            return fd.integer_delay_conv(
                x, self.weight, self.integer_delays(), self.max_delay, length=self.length,
                method=self._method(x, 1), state=state,
            )
        return fd.delay_conv(
            x, self.weight, self.positions, self.sigma, self.max_delay, interpolation=self.interpolation,
            length=self.length, method=self.method, tolerance=self.tolerance, state=state,
        )

    def project_step(self, x: Tensor, state: Optional[fd.DelayState]) -> tuple[Tensor, Optional[fd.DelayState]]:
        """:meth:`step` without the input checks; ``state`` must be given."""
        if self.mode == "none":
            return F.linear(x, self.weight), state
        if self.mode == "dense":
            return fd.delay_step(x, self.weight, state)
        if self.kind == "axonal":
            delayed, state = fd.depthwise_delay_step(x, self._line_taps(), state)
            return F.linear(delayed, self.weight), state
        if self.kind == "dendritic":
            return fd.depthwise_delay_step(F.linear(x, self.weight), self._line_taps(), state)
        if self.uses_integer_delays:
            return fd.integer_delay_step(x, self.weight, self.integer_delays(), state)
        return fd.delay_step(x, self.kernel(), state)

    def output_steps(self, steps: int) -> int:
        """Output length for ``steps`` input steps."""
        return steps if self.mode == "none" else fd.output_length(steps, self.max_delay, self.length)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, max_delay={self.max_delay}, "
            f"delays={self.mode!r}, kind={self.kind!r}, delays_per_synapse={self.delays_per_synapse}, "
            f"interpolation={self.interpolation!r}, length={self.length!r}, sigma={self.sigma.item():.4g}, "
            f"method={self.method!r}"
        )


_DELAY_OPTIONS = {
    "delays_per_synapse", "kind", "interpolation", "delays", "length", "sigma", "method", "tolerance",
    "eval_delays", "sigma_schedule", "faithful",
}
_SCHEDULE_OPTIONS = {"start", "end", "fraction", "steps_per_epoch"}


def _schedule_options(schedule: Union[bool, Mapping[str, Any]], sigma: Optional[float]) -> Optional[dict]:
    """Keyword options of the layer's :class:`SigmaSchedule` (``None``: σ is not scheduled)."""
    if schedule is False:
        return None
    options = {} if schedule is True else dict(schedule)
    unknown = sorted(set(options) - _SCHEDULE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown sigma_schedule option(s) {unknown}; expected some of {sorted(_SCHEDULE_OPTIONS)}")
    if sigma is not None:
        options.setdefault("start", float(sigma))
    return options


def _check_tau(tau: float) -> float:
    if not tau > 1.0:
        raise ValueError(f"tau (membrane time constant in steps) must be > 1 so that β = 1 − 1/τ is in (0, 1); got {tau}")
    return float(tau)


class DelayBlockState(NamedTuple):
    """State of a :class:`DelayBlock`: the delay ring buffer (``None`` without delays) and the LIF soma."""

    delay: Optional[fd.DelayState]
    lif: LIFState


class DelayBlock(SpikingLayer):
    """Faithful hidden block (spec delays §1.8–1.9): delay → BatchNorm → LIF → time-shared dropout.

    Per step and neuron, with :math:`\\beta = 1 - 1/\\tau` and the delayed, batch-normalised input :math:`I_t`:
    :math:`u_t = \\beta\\, u_{t-1} (1 - s_{t-1}) + I_t`, :math:`s_t = H(u_t - 1)`; the reset carries no
    gradient and the surrogate is ATan with α = 5 (SpikingJelly ``LIFNode(decay_input=False,
    detach_reset=True)``). BatchNorm pools its statistics over all T·B positions, padded steps included;
    dropout multiplies the spikes by one mask per sample and neuron, drawn per call, shared over time.

    Args:
        in_features, out_features, max_delay: as :class:`DelayedDense` (its other options go through
            ``**delay_options``).
        tau: membrane time constant in time steps (SHD 1.005, SSC/GSC 1.5 at 10 ms bins).
        dropout: drop probability (SHD 0.4, SSC/GSC 0.25).
        batch_norm: apply BatchNorm1d over (T·B) (momentum 0.1, eps 1e-5, affine).
        threshold, reset, detach_reset, surrogate: soma options (defaults: the official ones).

    The step mode needs ``eval()`` (BatchNorm statistics and dropout masks are per sequence in training).
    """

    emits_spikes = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int = 25,
        *,
        tau: float = 1.005,
        dropout: float = 0.4,
        batch_norm: bool = True,
        threshold: float = 1.0,
        reset: str = "hard",
        detach_reset: bool = True,
        surrogate: SurrogateLike = {"name": "atan", "alpha": 5.0},
        generator: Optional[torch.Generator] = None,
        **delay_options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(delay_options) - _DELAY_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; delay options are {sorted(_DELAY_OPTIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.in_features, self.out_features = in_features, out_features
        self.delay = DelayedDense(in_features, out_features, max_delay, generator=generator, **delay_options)
        self.norm = nn.BatchNorm1d(out_features) if batch_norm else None
        self.tau = _check_tau(tau)
        self.soma = Soma(
            out_features, beta_init=1.0 - 1.0 / self.tau, learn_beta=False, threshold=threshold, reset=reset,
            detach_reset=detach_reset, surrogate=surrogate, scale_input=False,
        )
        self.dropout = float(dropout)

    def initial_state(self, batch, device=None, dtype=None) -> DelayBlockState:
        delay = self.delay.initial_state(batch, device, dtype)
        return DelayBlockState(delay, self.soma.initial_state(batch, device, dtype))

    def _normalise(self, z: Tensor) -> Tensor:
        if self.norm is None:
            return z
        return self.norm(z.reshape(-1, self.out_features)).reshape(z.shape)

    def _sequence(self, x, state):
        fused = self._fused_inference(x, state)
        if fused is not None:
            return fused
        z, delay_state = self.delay.project(x, state.delay)
        soma = self.soma
        spikes, lif = lif_sequence(self._normalise(z), state.lif, soma.beta(), soma.threshold, **soma.options())
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = torch.empty(spikes.shape[1:], device=spikes.device, dtype=spikes.dtype).bernoulli_(keep) / keep
            spikes = spikes * mask
        return spikes, DelayBlockState(delay_state, lif)

    def _fused_inference(self, x, state) -> Optional[tuple[Tensor, DelayBlockState]]:
        """Evaluation with integer delays on the few-tap kernels: delay, BatchNorm (running statistics) and LIF
        in one compiled pass (:func:`spikescale.functional.delays.integer_delay_lif`); ``None`` where it does
        not apply."""
        delay, norm, soma = self.delay, self.norm, self.soma
        if self.training or delay.kind != "synaptic" or not delay.uses_integer_delays or delay._method(x, 1) != "taps":
            return None
        gain = bias = None
        if norm is not None:
            if norm.training or norm.running_mean is None:
                return None
            gain = torch.rsqrt(norm.running_var + norm.eps)
            bias = -norm.running_mean * gain
            if norm.affine:
                gain, bias = gain * norm.weight, bias * norm.weight + norm.bias
        fused = fd.integer_delay_lif(
            x, delay.weight, delay.integer_delays(), delay.max_delay, state.lif, soma.beta(), soma.threshold,
            reset=soma.reset, scale_input=soma.scale_input, surrogate=soma.surrogate, gain=gain, bias=bias,
            length=delay.length, state=state.delay,
        )
        if fused is None:
            return None
        spikes, delay_state, lif = fused
        return spikes, DelayBlockState(delay_state, lif)

    def _step(self, x, state):
        if self.training and (self.norm is not None or self.dropout > 0):
            raise ValueError(
                "DelayBlock.step needs eval() mode: BatchNorm statistics and dropout masks are per sequence in training"
            )
        z, delay_state = self.delay.project_step(x, state.delay)
        soma = self.soma
        spikes, lif = lif_step(self._normalise(z), state.lif, soma.beta(), soma.threshold, **soma.options())
        return spikes, DelayBlockState(delay_state, lif)

    def input_fan_out(self) -> Tensor:
        return torch.full((self.in_features,), float(self.delay.fan_out()))

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, dropout={self.dropout:g}, batch_norm={self.norm is not None}"


class DelayReadoutState(NamedTuple):
    """State of a :class:`DelayReadout`: the delay ring buffer and the membrane ``m [B, out]``."""

    delay: Optional[fd.DelayState]
    membrane: Tensor


class DelayReadout(SpikingLayer):
    r"""Readout: delay → non-firing LIF, :math:`m_t = \beta m_{t-1} + I_t` with :math:`\beta = 1 - 1/\tau`.

    The official readout is a LIF with threshold 1e9 that never fires, i.e. this leaky integrator; its
    output is the membrane sequence ``[T_out, B, out]``. Arguments as :class:`DelayBlock`.
    """

    emits_spikes = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int = 25,
        *,
        tau: float = 1.005,
        generator: Optional[torch.Generator] = None,
        **delay_options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(delay_options) - _DELAY_OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; delay options are {sorted(_DELAY_OPTIONS)}")
        self.in_features, self.out_features = in_features, out_features
        self.delay = DelayedDense(in_features, out_features, max_delay, generator=generator, **delay_options)
        self.tau = _check_tau(tau)
        self.beta = TimingFactor((out_features,), 1.0 - 1.0 / self.tau, learnable=False)

    def initial_state(self, batch, device=None, dtype=None) -> DelayReadoutState:
        membrane = torch.zeros(batch, self.out_features, device=device, dtype=dtype or torch.get_default_dtype())
        return DelayReadoutState(self.delay.initial_state(batch, device, dtype), membrane)

    def _sequence(self, x, state):
        z, delay_state = self.delay.project(x, state.delay)
        m = linear_recurrence(z, self.beta().to(z.dtype), state.membrane, scale_input=False)
        return m, DelayReadoutState(delay_state, m[-1])

    def _step(self, x, state):
        z, delay_state = self.delay.project_step(x, state.delay)
        m = linear_step(state.membrane, z, self.beta().to(z.dtype), scale_input=False)
        return m, DelayReadoutState(delay_state, m)

    def input_fan_out(self) -> Tensor:
        return torch.full((self.in_features,), float(self.delay.fan_out()))

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}"


class SigmaSchedule:
    r"""The shared interpolation width σ over training (spec delays §1.4).

    :math:`\sigma(e) = \sigma_0\, \alpha^{e}` for :math:`e < E_f`, then :math:`\sigma_\text{end}`, with
    :math:`E_f = \lfloor \text{fraction} \cdot \text{epochs} \rfloor` and
    :math:`\alpha = (\sigma_\text{end}/\sigma_0)^{1/E_f}`; ``e`` counts completed epochs. This equals the
    official decay (σ multiplied by α after each epoch while ``epoch < E_f``). With ``steps_per_epoch``
    the decay is continuous per step, :math:`e \to e + s/S`. :math:`E_f = 0` gives a constant
    :math:`\sigma_\text{end}` (the "no schedule" ablation).

    Args:
        max_delay: K; the start is ⌊K/2⌋ unless ``start`` is given.
        epochs: total training epochs.
        end: final σ (0.23: an effective Gaussian width of 0.5 taps).
        fraction: share of the epochs over which σ decays (1/4).
        steps_per_epoch: decay per optimiser step instead of per epoch.
    """

    def __init__(
        self,
        max_delay: int,
        epochs: int,
        *,
        start: Optional[float] = None,
        end: float = 0.23,
        fraction: float = 0.25,
        steps_per_epoch: Optional[int] = None,
    ) -> None:
        fd.check_max_delay(max_delay)
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        self.start = float(max_delay // 2 if start is None else start)
        self.end = float(end)
        if not 0.0 < self.end <= self.start:
            raise ValueError(f"the σ schedule needs 0 < end <= start, got start={self.start}, end={self.end}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        self.epochs = epochs
        self.decay_epochs = int(math.floor(fraction * epochs))
        self.steps_per_epoch = steps_per_epoch
        self.alpha = (self.end / self.start) ** (1.0 / self.decay_epochs) if self.decay_epochs else 1.0

    def value(self, epoch: int, step: int = 0) -> float:
        """σ for ``epoch`` completed epochs (and ``step`` steps into the next one when decaying per step)."""
        if epoch < 0 or step < 0:
            raise ValueError(f"epoch and step must be >= 0, got epoch={epoch}, step={step}")
        progress = float(epoch)
        if self.steps_per_epoch is not None:
            progress += step / self.steps_per_epoch
        if progress >= self.decay_epochs:
            return self.end
        return self.start * self.alpha ** progress

    def apply(self, model: nn.Module, epoch: int, step: int = 0) -> float:
        """Set σ on every :class:`DelayedDense` of ``model``; returns the value."""
        sigma = self.value(epoch, step)
        for module in model.modules():
            if isinstance(module, DelayedDense):
                module.set_sigma(sigma)
        return sigma

    def __repr__(self) -> str:
        per = f", steps_per_epoch={self.steps_per_epoch}" if self.steps_per_epoch else ""
        return (
            f"SigmaSchedule(start={self.start:g}, end={self.end:g}, decay_epochs={self.decay_epochs}, "
            f"alpha={self.alpha:.4f}{per})"
        )


def clamp_positions_(model: nn.Module) -> None:
    """Clamp the positions of every :class:`DelayedDense` of ``model`` (after each optimiser step)."""
    for module in model.modules():
        if isinstance(module, DelayedDense):
            module.clamp_positions_()


def set_eval_delays(model: nn.Module, mode: str) -> None:
    """Evaluate every delay layer of ``model`` with ``"integer"`` or ``"interpolated"`` delays."""
    _choice(mode, EVAL_DELAYS, "eval_delays")
    for module in model.modules():
        if isinstance(module, DelayedDense):
            module.eval_delays = mode


def export_delays(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: DelayedDense.export()}`` for every delay layer (integer delays, training state untouched)."""
    return {name: module.export() for name, module in model.named_modules() if isinstance(module, DelayedDense)}


def build_delay_network(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    max_delay: int = 25,
    tau: float = 1.005,
    dropout: float = 0.4,
    seed: Optional[int] = None,
    readout_options: Optional[dict[str, Any]] = None,
    **options: Any,
) -> Network:
    """The DCLS network: ``DelayBlock`` per hidden width, then a :class:`DelayReadout` (SHD defaults).

    ``options`` go to every block (delay options also to the readout, e.g. ``delays="fixed"`` for the
    ablation); ``readout_options`` override the readout's delay options. ``seed`` seeds the initial
    weights and positions (layer ``k`` uses ``seed + k``).
    """
    if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")

    def generator(k: int) -> Optional[torch.Generator]:
        return None if seed is None else torch.Generator().manual_seed(seed + k)

    layers = []
    width = in_features
    for k, size in enumerate(hidden):
        layers.append(DelayBlock(width, size, max_delay, tau=tau, dropout=dropout, generator=generator(k), **options))
        width = size
    delay_options = {key: value for key, value in options.items() if key in _DELAY_OPTIONS}
    delay_options.update(readout_options or {})
    readout = DelayReadout(width, out_features, max_delay, tau=tau, generator=generator(len(hidden)), **delay_options)
    return Network(layers, readout)
