r"""Timing factors (decay per step) as learnable parameters with a stated parameterisation.

Two parameterisations (DESIGN.md, spec dh-snn §2.3):

* ``"sigmoid"`` (DH-SNN default): :math:`a = \mathrm{sigmoid}(\hat a)`, the raw :math:`\hat a` is learned.
  Dimensionless and per step; ``dt`` only changes how data are binned.
* ``"exp"``: :math:`a = \exp(-\Delta t / \tau)` with :math:`\tau = e^{\lambda}` and the log time constant
  :math:`\lambda` learned, so a trained model can move to another step ``dt`` by changing :attr:`dt`.

Initial ranges of the raw value (SI Table S3); ``exp`` draws the factor the same way and converts it:

=========  ============  ================  ======================
preset     raw init      factor range      effective τ (steps)
=========  ============  ================  ======================
small      U(-4, 0)      0.018 – 0.500     0.25 – 1.44
medium     U(0, 4)       0.500 – 0.982     1.44 – 55
large      U(2, 6)       0.881 – 0.9975    7.9 – 404
=========  ============  ================  ======================

``init`` may also be a ``(low, high)`` raw range, a number (constant factor in (0, 1)), or a list with
one entry per index of the last dimension (per-branch presets, e.g. the XOR "beneficial" init
``["large", "small"]``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ["PRESETS", "PARAMETERISATIONS", "TimingFactor", "InitLike"]

PRESETS: dict[str, tuple[float, float]] = {"small": (-4.0, 0.0), "medium": (0.0, 4.0), "large": (2.0, 6.0)}
PARAMETERISATIONS = ("sigmoid", "exp")

InitLike = Union[str, float, tuple, Sequence]


def _raw_range(init) -> tuple[float, float]:
    """Raw (pre-sigmoid) range of one init entry."""
    if isinstance(init, str):
        if init not in PRESETS:
            raise ValueError(f"unknown timing init {init!r}; expected one of {sorted(PRESETS)}, a (low, high) range or a factor in (0, 1)")
        return PRESETS[init]
    if isinstance(init, (int, float)):
        if not 0.0 < float(init) < 1.0:
            raise ValueError(f"a constant timing factor must lie in (0, 1), got {init}")
        raw = math.log(float(init) / (1.0 - float(init)))
        return raw, raw
    if isinstance(init, (tuple, list)) and len(init) == 2 and all(isinstance(v, (int, float)) for v in init):
        low, high = float(init[0]), float(init[1])
        if low > high:
            raise ValueError(f"timing init range must be (low, high) with low <= high, got {init}")
        return low, high
    raise ValueError(f"invalid timing init {init!r}; expected a preset name {sorted(PRESETS)}, a (low, high) range or a factor")


def _is_per_index(init) -> bool:
    if isinstance(init, str) or not isinstance(init, (list, tuple)):
        return False
    # (low, high) pairs of numbers are ranges, not per-index lists.
    return not (len(init) == 2 and all(isinstance(v, (int, float)) for v in init))


def sample_raw(shape: Sequence[int], init: InitLike, generator: Optional[torch.Generator] = None) -> Tensor:
    """Raw values of ``shape`` drawn from ``init`` (per-index lists apply along the last dimension)."""
    shape = tuple(shape)
    if _is_per_index(init):
        if not shape or len(init) != shape[-1]:
            raise ValueError(f"per-branch timing init has {len(init)} entries but the last dimension is {shape[-1:] or '()'}")
        columns = [sample_raw(shape[:-1], entry, generator) for entry in init]
        return torch.stack(columns, dim=-1)
    low, high = _raw_range(init)
    return low + (high - low) * torch.rand(shape, generator=generator)


class TimingFactor(nn.Module):
    """A tensor of decay factors in (0, 1); call the module to get them.

    Args:
        shape: e.g. ``(N,)`` for a soma or ``(N, D)`` for dendritic branches.
        init: preset name, ``(low, high)`` raw range, constant factor, or per-index list (see module doc).
        param: ``"sigmoid"`` or ``"exp"``.
        dt: step length used by ``"exp"`` (same unit as τ).
        learnable: a ``Parameter`` if true, else a buffer (the paper's "fixed" experiments).
    """

    def __init__(
        self,
        shape: Sequence[int],
        init: InitLike = "medium",
        *,
        param: str = "sigmoid",
        dt: float = 1.0,
        learnable: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        if param not in PARAMETERISATIONS:
            raise ValueError(f"unknown timing parameterisation {param!r}; expected one of {PARAMETERISATIONS}")
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.param = param
        self.dt = float(dt)
        self.init = init
        raw = sample_raw(shape, init, generator)
        if param == "exp":
            # τ = -dt / ln(sigmoid(raw)) = dt / softplus(-raw); store log τ.
            raw = torch.log(self.dt / nn.functional.softplus(-raw))
        name = "raw" if param == "sigmoid" else "log_tau"
        self.name = name
        if learnable:
            self.register_parameter(name, nn.Parameter(raw))
        else:
            self.register_buffer(name, raw)

    @property
    def learnable(self) -> bool:
        return isinstance(getattr(self, self.name), nn.Parameter)

    @property
    def value(self) -> Tensor:
        """The raw stored tensor (``raw`` or ``log_tau``)."""
        return getattr(self, self.name)

    def forward(self) -> Tensor:
        if self.param == "sigmoid":
            return torch.sigmoid(self.raw)
        return torch.exp(-self.dt * torch.exp(-self.log_tau))

    def extra_repr(self) -> str:
        shape = tuple(self.value.shape)
        return f"shape={shape}, init={self.init!r}, param={self.param!r}, learnable={self.learnable}"
