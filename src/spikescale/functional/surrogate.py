r"""Surrogate spike functions.

The forward pass of every spike function is the Heaviside step

.. math:: s = H(x), \qquad x = u - \vartheta, \qquad H(x) = 1 \text{ if } x > 0 \text{ else } 0,

(strict ``>``, as the official DH-SNN code). The backward pass replaces the Dirac delta
:math:`\partial s / \partial u` by a smooth pseudo-derivative :math:`g(x)`:

========================  ==================================================================================
name                      :math:`g(x)`
========================  ==================================================================================
``"mg"`` multi-Gaussian   :math:`\gamma[(1+h)\,G(x;0,\sigma) - h\,G(x;\sigma,s\sigma) - h\,G(x;-\sigma,s\sigma)]`
                          (Yin et al. 2021; DH-SNN uses :math:`\gamma=0.5, h=0.15, \sigma=0.5, s=6`;
                          ``h=0`` gives a plain Gaussian)
``"atan"``                :math:`\frac{\alpha}{2}\,/\,(1 + (\frac{\pi}{2}\alpha x)^2)` (SpikingJelly ATan)
``"fast_sigmoid"``        :math:`1 / (1 + k|x|)^2` (SuperSpike / snnTorch)
``"rect"``                :math:`\frac{1}{w}\,[|x| < w/2]` (rectangular, bounded support)
========================  ==================================================================================

:math:`G(x; \mu, \sigma)` is the normalised Gaussian density. ``MultiGaussian(truncate=c)`` sets
:math:`g(x) = 0` for :math:`|x| \ge c` (bounded support, as the sparse backward pass needs); ``support``
gives that half-width (``inf`` when unbounded). Surrogates are small frozen
dataclasses: pick one by name with :func:`get_surrogate` (``"mg"``, ``{"name": "atan", "alpha": 5}``)
or pass an instance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping, Union

import torch
from torch import Tensor

__all__ = [
    "Surrogate",
    "MultiGaussian",
    "ATan",
    "FastSigmoid",
    "Rectangular",
    "SURROGATES",
    "get_surrogate",
    "heaviside",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def torch_box(x: Tensor, half_width: float) -> Tensor:
    """Indicator ``|x| < half_width`` in the dtype of ``x`` (the ``box`` of the torch formulas)."""
    return (x.abs() < half_width).to(x.dtype)


@dataclass(frozen=True)
class Surrogate:
    """Base class: ``grad(x)`` is the pseudo-derivative of the spike with respect to ``x = u - θ``.

    Each built-in surrogate states its pseudo-derivative once, as the static method
    ``formula(x, exp, box, *params)`` written with arithmetic, ``exp`` and ``box(x, w) = [|x| < w]`` only
    (parameters in field order). :meth:`grad` evaluates it on tensors with ``torch.exp``; the compiled
    backends (:mod:`spikescale.kernels`) compile the same function for scalars, so a kernel never restates
    a surrogate. A subclass that overrides :meth:`grad` (or :meth:`spike`) instead runs on the plain
    PyTorch loops.
    """

    name: ClassVar[str] = ""

    formula: ClassVar[Any] = None

    def spike(self, u: Tensor, threshold, out: Tensor | None = None) -> Tensor:
        """Forward spike ``H(u - θ)`` in the dtype of ``u`` (written into ``out`` when given)."""
        if out is None:
            return (u > threshold).to(u.dtype)
        return torch.gt(u, threshold, out=out)

    def grad(self, x: Tensor) -> Tensor:
        return type(self).formula(x, torch.exp, torch_box, *self.formula_params())

    def formula_params(self) -> tuple[float, ...]:
        """The parameters passed to ``formula`` after ``(x, exp, box)``: the fields in order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    @property
    def support(self) -> float:
        """Half-width of the support: ``grad(x) == 0`` wherever ``|x| >= support`` (``inf`` if unbounded)."""
        return math.inf

    def spec(self) -> dict[str, Any]:
        """A plain ``dict`` that :func:`get_surrogate` turns back into this surrogate."""
        return {"name": self.name, **asdict(self)}


def _mg_formula(x, exp, box, gamma, h, sigma, s, truncate):
    norm = 1.0 / (sigma * _SQRT_2PI)
    g = (1.0 + h) * norm * exp(-0.5 * (x / sigma) ** 2)
    if h != 0.0:
        wide = s * sigma
        side = exp(-0.5 * ((x - sigma) / wide) ** 2) + exp(-0.5 * ((x + sigma) / wide) ** 2)
        g = g - (h * norm / s) * side
    if truncate > 0.0:
        g = g * box(x, truncate)
    return gamma * g


@dataclass(frozen=True)
class MultiGaussian(Surrogate):
    """Multi-Gaussian surrogate; peak 0.439 at threshold, integral ``γ(1-h)`` = 0.425 with the defaults.

    ``truncate > 0`` sets the pseudo-derivative to zero where ``|x| >= truncate`` (bounded support, for
    the sparse backward pass); ``0`` (default) keeps the untruncated function.
    """

    name: ClassVar[str] = "mg"
    gamma: float = 0.5
    h: float = 0.15
    sigma: float = 0.5
    s: float = 6.0
    truncate: float = 0.0

    formula: ClassVar[Any] = staticmethod(_mg_formula)

    @property
    def support(self) -> float:
        return self.truncate if self.truncate > 0.0 else math.inf

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        if self.truncate == 0.0:
            del spec["truncate"]
        return spec


def _atan_formula(x, exp, box, alpha):
    return (0.5 * alpha) / (1.0 + (0.5 * math.pi * alpha * x) ** 2)


@dataclass(frozen=True)
class ATan(Surrogate):
    """Arc-tangent surrogate: derivative of ``atan(π/2·α·x)/π + 1/2``; peak ``α/2``."""

    name: ClassVar[str] = "atan"
    alpha: float = 2.0

    formula: ClassVar[Any] = staticmethod(_atan_formula)


def _fast_sigmoid_formula(x, exp, box, slope):
    return 1.0 / (1.0 + slope * abs(x)) ** 2


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast-sigmoid surrogate ``1/(1+k|x|)^2``; peak 1."""

    name: ClassVar[str] = "fast_sigmoid"
    slope: float = 25.0

    formula: ClassVar[Any] = staticmethod(_fast_sigmoid_formula)


def _rect_formula(x, exp, box, width):
    return box(x, 0.5 * width) * (1.0 / width)


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """Box of width ``w`` and height ``1/w`` centred on the threshold (integral 1, bounded support)."""

    name: ClassVar[str] = "rect"
    width: float = 1.0

    formula: ClassVar[Any] = staticmethod(_rect_formula)

    @property
    def support(self) -> float:
        return 0.5 * self.width


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (MultiGaussian, ATan, FastSigmoid, Rectangular)
}

SurrogateLike = Union[str, Mapping[str, Any], Surrogate]


def get_surrogate(spec: SurrogateLike = "mg", **params: Any) -> Surrogate:
    """Build a surrogate from a name, a ``{"name": ..., **params}`` mapping, or return an instance as is.

    >>> get_surrogate("mg", h=0.0)   # plain Gaussian
    MultiGaussian(gamma=0.5, h=0.0, sigma=0.5, s=6.0)
    """
    if isinstance(spec, Surrogate):
        if params:
            raise ValueError("get_surrogate: keyword parameters cannot be combined with a Surrogate instance")
        return spec
    if isinstance(spec, Mapping):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        if "name" not in spec:
            raise ValueError(f"surrogate mapping needs a 'name' key, one of {sorted(SURROGATES)}; got {dict(spec)}")
        spec = spec["name"]
    if not isinstance(spec, str) or spec not in SURROGATES:
        raise ValueError(f"unknown surrogate {spec!r}; expected one of {sorted(SURROGATES)}")
    cls = SURROGATES[spec]
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"surrogate {spec!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}")
    return cls(**{k: float(v) for k, v in params.items()})


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return surrogate.spike(x, 0.0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None


def heaviside(x: Tensor, surrogate: SurrogateLike = "mg") -> Tensor:
    """Spike ``H(x)`` (``x > 0``) with the surrogate pseudo-derivative in the backward pass."""
    return _Heaviside.apply(x, get_surrogate(surrogate))
