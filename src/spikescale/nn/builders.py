"""Model builders: a network kind, layer widths and options → :class:`~spikescale.nn.network.Network`."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .delays import DelayBlock, build_delay_network
from .layers import DHDense, DHRecurrent, LIFDense
from .network import Network
from .readout import Readout

__all__ = ["MODEL_KINDS", "build_network"]

MODEL_KINDS = {"sfnn": LIFDense, "dh_sfnn": DHDense, "dh_srnn": DHRecurrent, "delays": DelayBlock}

_DENDRITE_OPTIONS = {"branches", "mask", "group_size", "sparsity", "alpha_init", "learn_alpha", "weight_init", "seed", "projection"}


def build_network(
    kind: str,
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    readout: str = "integrator",
    readout_options: Optional[dict[str, Any]] = None,
    seed: Optional[int] = None,
    **layer_options: Any,
) -> Network:
    """Build ``in_features → hidden[0] → … → readout(out_features)``.

    Args:
        kind: ``"sfnn"`` (vanilla LIF), ``"dh_sfnn"`` (:class:`DHDense`), ``"dh_srnn"`` (:class:`DHRecurrent`)
            or ``"delays"`` (DCLS :class:`DelayBlock` layers and their own delayed readout, built by
            :func:`~spikescale.nn.delays.build_delay_network`; ``readout_options`` are its delay options and
            ``delay_kind`` is the delay's ``kind``: ``"synaptic"``, ``"axonal"`` or ``"dendritic"``).
        hidden: widths of the hidden layers (all of ``kind``).
        readout: readout mode (``"integrator"``, ``"linear"``, ``"spike_count"``); ``readout_options`` go to
            :class:`Readout` (``faithful`` is passed on from ``layer_options`` unless given).
        seed: seeds the branch masks (layer ``k`` uses ``seed + k``).
        **layer_options: keyword arguments of the layer class (``branches``, ``mask``, ``alpha_init``, soma
            options such as ``beta_init``, ``threshold``, ``reset``, ``faithful``).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")
    if kind == "delays":
        if readout != "integrator":
            raise ValueError(
                "kind 'delays' has its own readout (a delayed non-firing LIF, readout='integrator'), "
                f"got readout={readout!r}"
            )
        options = dict(layer_options)
        if "delay_kind" in options:  # "kind" names the network here; the delay kind is spelt delay_kind
            options["kind"] = options.pop("delay_kind")
        return build_delay_network(in_features, hidden, out_features, seed=seed, readout_options=readout_options, **options)
    cls = MODEL_KINDS[kind]
    if kind == "sfnn":
        misplaced = sorted(set(layer_options) & _DENDRITE_OPTIONS)
        if misplaced:
            raise ValueError(f"options {misplaced} apply to dendritic layers, not to kind 'sfnn'")
    layers = []
    width = in_features
    for k, size in enumerate(hidden):
        options = dict(layer_options)
        if kind != "sfnn" and seed is not None:
            options["seed"] = seed + k
        layers.append(cls(width, size, **options))
        width = size
    readout_options = dict(readout_options or {})
    readout_options.setdefault("faithful", bool(layer_options.get("faithful", False)))
    return Network(layers, Readout(width, out_features, mode=readout, **readout_options))
