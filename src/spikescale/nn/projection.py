r"""Input projections of the spiking layers, and the choice between their exact methods.

A layer maps its input ``x [T, B, M]`` to synaptic currents with one product for all steps. Which
method is cheapest depends on the input and the mask, and every method gives the same result (up to
floating-point rounding; tested):

==============  ==================================================================  ======================
method          computes                                                            when
==============  ==================================================================  ======================
dense           ``F.linear`` with the masked ``[N·D, M]`` weight                    dense input
event           sums of weight columns over the input's non-zero entries, forward   spike input sparser
                and weight gradient (:mod:`spikescale.functional.events`); for      than ``event_density``
                masked weights only the connected (input, branch) pairs             (measured per batch)
grouped         one ``[rows, K] @ [K, G]`` block product per (group, branch)        ``grouped`` masks,
                                                                                    dense input
==============  ==================================================================  ======================

``input_path`` on a layer selects ``"auto"`` (count the non-zero entries of each batch and take the
event path at or below ``event_density``), ``"dense"`` or ``"event"`` (always; needs a backend with event
kernels, see :mod:`spikescale.kernels`). The default thresholds come from the crossovers measured by
``benchmarks/bench_projection.py`` (forward + backward, 1 and 2 threads, AVX-512 CPU): against a dense
product the event path wins up to about 25-35 % input density (700→256 layer, and the DH-SFNN layer with
a random mask), against grouped block products up to about 7-10 %.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..functional.events import events_available, find_events

__all__ = [
    "INPUT_PATHS",
    "EVENT_DENSITY",
    "EVENT_DENSITY_BLOCKS",
    "check_input_path",
    "default_event_density",
    "input_events",
    "grouped_projection",
]

INPUT_PATHS = ("auto", "dense", "event")

#: Density up to which ``"auto"`` takes the event path when the alternative is a dense product.
EVENT_DENSITY = 0.2
#: The same when the alternative is grouped block products (``DHDense`` with a grouped mask).
EVENT_DENSITY_BLOCKS = 0.07


def default_event_density(block_products: bool = False) -> float:
    """Default ``event_density`` of a layer (see the module docstring)."""
    return EVENT_DENSITY_BLOCKS if block_products else EVENT_DENSITY


def check_input_path(path: str, event_density: Optional[float]) -> None:
    if path not in INPUT_PATHS:
        raise ValueError(f"unknown input_path {path!r}; expected one of {INPUT_PATHS}")
    if event_density is not None and not 0.0 <= event_density <= 1.0:
        raise ValueError(f"event_density must lie in [0, 1], got {event_density}")


def input_events(x: Tensor, path: str, max_density: float):
    """The events of ``x`` when its projection takes the event path, else ``None``.

    ``"auto"`` counts the non-zero entries of ``x`` (one pass) and gathers them only when their
    fraction is at most ``max_density``; ``"event"`` always gathers them.
    """
    if path == "dense":
        return None
    if not events_available(x):
        if path == "event":
            raise ValueError(
                f"input_path='event' needs a backend with event kernels for {x.device.type} {x.dtype} tensors "
                "(numba on CPU: pip install 'spikescale[fast]'); use input_path='auto' or 'dense'"
            )
        return None
    return find_events(x, 1.0 if path == "event" else max_density)


_ROW_CHUNK = 4096


def grouped_projection(x: Tensor, weight: Tensor, index: Tensor) -> Tensor:
    """Block products for grouped masks: ``x [R, M]`` → ``[R, N, D]`` at the cost of an ``N × M`` layer.

    ``index [G', D, K]`` lists the inputs of branch ``d`` of group ``g`` (``M`` = padding). Each group's
    branch is one ``[rows, K] @ [K, G]`` product, batched over (group, branch). Rows are processed in
    chunks of 4096 so that the gathered input and the block outputs stay small (no large temporaries:
    on CPU a fresh 64 MiB buffer costs more page faults than its product costs FLOPs).
    """
    rows, inputs = x.shape
    neurons, branches, _ = weight.shape
    groups, _, width = index.shape
    size = neurons // groups
    # Padding slots read any column (0) and meet a zero weight.
    columns = index.reshape(-1).clamp(max=inputs - 1)
    w_ext = torch.cat([weight, weight.new_zeros(neurons, branches, 1)], dim=2).reshape(groups, size, branches, inputs + 1)
    blocks = torch.gather(w_ext, 3, index[:, None].expand(groups, size, branches, width))
    blocks = blocks.permute(0, 2, 3, 1).reshape(groups * branches, width, size)  # [G'·D, K, G]
    out = x.new_empty(rows, neurons, branches)
    view = out.view(rows, groups, size, branches)
    for start in range(0, rows, _ROW_CHUNK):
        chunk = x[start:start + _ROW_CHUNK]
        gathered = chunk.index_select(1, columns).view(-1, groups * branches, width).transpose(0, 1)
        products = torch.bmm(gathered, blocks)  # [G'·D, rows, G]
        view[start:start + _ROW_CHUNK] = products.view(groups, branches, -1, size).permute(2, 0, 3, 1)
    return out
