r"""Spike events → frames: vectorised binning shared by SHD/SSC, encoded audio and user event lists.

A set of samples is held as concatenated events plus offsets: sample ``i`` owns events
``offsets[i]:offsets[i+1]`` of ``times`` (seconds) and ``units`` (input channel, ``0 … channels-1``).

**Clean binning** (default). With :math:`t_0 = 0` (``align="zero"``) or the sample's first spike
(``align="first_spike"``, the DCLS / SpikingJelly convention), an event at time :math:`t` on unit
:math:`u` lands in

.. math::  \text{step} = \lfloor (t - t_0) / \Delta t \rfloor, \qquad \text{channel} = \lfloor u / p \rfloor

with :math:`p` the pooling factor (``pool=5`` sums groups of 5 channels: 700 → 140). A sample has
:math:`T = \lceil D / \Delta t \rceil` steps when a duration :math:`D` is set (later events are dropped),
otherwise :math:`T_i = \lfloor (t_{last} - t_0)/\Delta t \rfloor + 1` steps (every event kept; batches
are padded by :func:`spikescale.data.batch.collate`). Frames hold event counts, or 0/1 with
``binary=True``.

**Faithful DH-SNN binning** (``faithful=True``, spec dh-snn §5.1): step :math:`i` holds the not yet used
events with :math:`t \le i\,\Delta t`, i.e. the step is the first :math:`i` with :math:`t \le i\,\Delta t`
(compared in the dtype the times are stored in, as the official loop does), events after
:math:`(T-1)\,\Delta t` are dropped; unit 0 is dropped and unit :math:`u` goes to channel
:math:`C - u` (reversed order, channel 0 always empty).

Frames are stored sparsely (:class:`SparseFrames`: one ``(step, channel, count)`` triple per non-empty
cell), so a whole SHD training set at 1 ms fits in memory and on disk; :meth:`SparseFrames.dense`
makes the ``[T, C]`` float32 tensor of one sample.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ALIGNMENTS",
    "MAX_SAMPLE_CELLS",
    "EventBinning",
    "SparseFrames",
    "bin_events",
    "concat_events",
    "concat_frames",
    "frames_reference",
]

ALIGNMENTS = ("zero", "first_spike")

# Events handled per vectorised pass: bounds the temporary arrays (about 40 bytes per event).
_CHUNK_EVENTS = 1 << 21

# Largest sample binning accepts, in frame cells (steps × output channels): 2^28 float32 cells are 1 GiB
# per dense item. Longer samples come from corrupt spike times or a mistaken dt and could not be read.
MAX_SAMPLE_CELLS = 1 << 28


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class EventBinning:
    """How events become frames.

    Attributes:
        dt_ms: step length Δt in milliseconds (> 0).
        duration_ms: fixed duration D (ms): every sample gets ``ceil(D/Δt)`` steps and later events are
            dropped. ``None``: each sample is as long as its last event (pad per batch).
        align: ``"zero"`` (t₀ = 0) or ``"first_spike"`` (t₀ = the sample's first event, DCLS).
        pool: sum groups of ``pool`` adjacent channels (must divide ``channels``).
        binary: 0/1 frames instead of counts.
        faithful: the official DH-SNN rule (``t ≤ i·Δt``, unit 0 dropped, channels reversed); needs
            ``align="zero"`` and a duration.
        channels: number of input units in the events (700 for SHD/SSC).
    """

    dt_ms: float = 1.0
    duration_ms: Optional[float] = None
    align: str = "zero"
    pool: int = 1
    binary: bool = False
    faithful: bool = False
    channels: int = 700

    def __post_init__(self):
        if not (_is_number(self.dt_ms) and math.isfinite(self.dt_ms) and self.dt_ms > 0):
            raise ValueError(f"dt_ms must be a positive number of milliseconds, got {self.dt_ms!r}")
        if self.duration_ms is not None and not (_is_number(self.duration_ms) and math.isfinite(self.duration_ms) and self.duration_ms > 0):
            raise ValueError(f"duration_ms must be a positive number of milliseconds or None, got {self.duration_ms!r}")
        if self.align not in ALIGNMENTS:
            raise ValueError(f"unknown align {self.align!r}; expected one of {ALIGNMENTS}")
        if not _is_count(self.channels):
            raise ValueError(f"channels must be a positive int, got {self.channels!r}")
        if not _is_count(self.pool) or self.channels % self.pool:
            raise ValueError(f"pool must be a positive int dividing channels={self.channels}, got {self.pool!r}")
        for name in ("binary", "faithful"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.faithful and (self.align != "zero" or self.duration_ms is None):
            raise ValueError(
                "faithful (DH-SNN) binning counts time from t=0 over a fixed duration; "
                "use align='zero' and set duration_ms (1000 in the official code)"
            )
        steps = 1.0 if self.duration_ms is None else self.duration_ms / self.dt_ms
        if not steps * self.out_channels <= MAX_SAMPLE_CELLS:
            raise ValueError(
                f"duration_ms={self.duration_ms!r} / dt_ms={self.dt_ms!r} gives {steps:.4g} steps × {self.out_channels} "
                f"channels per sample, more than {MAX_SAMPLE_CELLS} frame cells; use a larger dt_ms, a shorter "
                f"duration_ms or a larger pool"
            )

    @property
    def out_channels(self) -> int:
        """Channels of the frames: ``channels // pool``."""
        return self.channels // self.pool

    @property
    def fixed_steps(self) -> Optional[int]:
        """``ceil(duration/Δt)`` (``None`` without a duration); a ratio within 1e-9 of an integer counts as it."""
        if self.duration_ms is None:
            return None
        ratio = self.duration_ms / self.dt_ms
        return max(1, int(round(ratio)) if abs(ratio - round(ratio)) < 1e-9 else math.ceil(ratio))

    def key(self) -> str:
        """A stable text form of the settings (part of cache keys)."""
        return json.dumps(asdict(self), sort_keys=True)


class SparseFrames(NamedTuple):
    """Binned samples, stored sparsely.

    Sample ``i`` has ``lengths[i]`` steps and the non-empty cells ``offsets[i]:offsets[i+1]`` of
    ``steps``, ``chans`` and ``counts`` (sorted by step, then channel).
    """

    steps: np.ndarray
    chans: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    channels: int

    def __len__(self) -> int:
        return len(self.lengths)

    def dense(self, index: int) -> Tensor:
        """``[T_i, C]`` float32 frames of sample ``index``."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        # Built in numpy (single-threaded): a per-item job this small only loses to torch's thread pool.
        out = np.zeros((int(self.lengths[index]), self.channels), dtype=np.float32)
        out[self.steps[lo:hi], self.chans[lo:hi]] = self.counts[lo:hi]
        return torch.from_numpy(out)


def concat_frames(parts: Sequence[SparseFrames]) -> SparseFrames:
    """Join the frames of consecutive groups of samples into one :class:`SparseFrames`."""
    if not parts or len({p.channels for p in parts}) != 1:
        raise ValueError("concat_frames: need at least one part, all with the same number of channels")
    sizes = [int(p.offsets[-1]) for p in parts]
    starts = np.cumsum([0] + sizes[:-1])
    offsets = np.concatenate([[0]] + [p.offsets[1:] + start for p, start in zip(parts, starts)]).astype(np.int64)
    return SparseFrames(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in ("steps", "chans", "counts")),
        offsets,
        np.concatenate([p.lengths for p in parts]),
        parts[0].channels,
    )


def concat_events(samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[(times, units), ...]`` → concatenated ``(times, units, offsets [N+1])``."""
    sizes = [len(np.asarray(t)) for t, _ in samples]
    for i, (t, u) in enumerate(samples):
        if len(np.asarray(u)) != sizes[i]:
            raise ValueError(f"sample {i}: {sizes[i]} times but {len(np.asarray(u))} units; expected equal lengths")
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if not samples:
        return np.zeros(0), np.zeros(0, dtype=np.int64), offsets
    times = np.concatenate([np.asarray(t).reshape(-1) for t, _ in samples])
    units = np.concatenate([np.asarray(u).reshape(-1) for _, u in samples])
    return times, units, offsets


def _check_events(
    times: np.ndarray, units: np.ndarray, offsets: np.ndarray, channels: int, source: str, first: int
) -> None:
    if times.shape != units.shape or times.ndim != 1:
        raise ValueError(f"{source}: times {times.shape} and units {units.shape} must be matching 1-D arrays")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != times.size or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{source}: offsets must rise from 0 to the number of events ({times.size})")
    if not np.issubdtype(times.dtype, np.floating) and not np.issubdtype(times.dtype, np.integer):
        raise ValueError(f"{source}: spike times must be numbers (seconds), got dtype {times.dtype}")
    if not np.issubdtype(units.dtype, np.integer):
        raise ValueError(f"{source}: units must be integers (channel indices), got dtype {units.dtype}")
    if times.size == 0:
        return
    bad = ~np.isfinite(times) | (times < 0)
    if bad.any():
        event = int(np.flatnonzero(bad)[0])
        sample = first + int(np.searchsorted(offsets, event, side="right") - 1)
        raise ValueError(f"{source}: sample {sample} has spike time {times[event]!r}; times must be finite and >= 0 s")
    bad = (units < 0) | (units >= channels)
    if bad.any():
        event = int(np.flatnonzero(bad)[0])
        sample = first + int(np.searchsorted(offsets, event, side="right") - 1)
        raise ValueError(
            f"{source}: sample {sample} has unit {int(units[event])}; expected units in [0, {channels}) "
            f"(set channels= to the number of input units)"
        )


def _sample_lengths(
    times: np.ndarray, offsets: np.ndarray, t0: np.ndarray, binning: EventBinning, source: str, first: int
) -> np.ndarray:
    """Steps per sample (see module docstring); a sample longer than :data:`MAX_SAMPLE_CELLS` is an error."""
    fixed = binning.fixed_steps
    n = offsets.size - 1
    if fixed is not None:
        return np.full(n, fixed, dtype=np.int64)
    counts = np.diff(offsets)
    last = np.zeros(n)
    nonempty = counts > 0
    if nonempty.any():
        last[nonempty] = np.maximum.reduceat(times.astype(np.float64), offsets[:-1][nonempty])
    steps = np.where(nonempty, np.floor((last - t0) * 1000.0 / binning.dt_ms) + 1, 1)  # float64: no overflow
    too_long = steps * binning.out_channels > MAX_SAMPLE_CELLS
    if too_long.any():
        i = int(np.flatnonzero(too_long)[0])
        raise ValueError(
            f"{source}: sample {first + i} spans {last[i] - t0[i]:.6g} s = {steps[i]:.4g} steps of {binning.dt_ms:g} ms "
            f"× {binning.out_channels} channels, more than {MAX_SAMPLE_CELLS} frame cells; check its spike times "
            f"(seconds expected) or set duration_ms or a larger dt_ms"
        )
    return steps.astype(np.int64)


def _first_spikes(times: np.ndarray, offsets: np.ndarray, binning: EventBinning) -> np.ndarray:
    n = offsets.size - 1
    t0 = np.zeros(n)
    if binning.align == "first_spike":
        nonempty = np.diff(offsets) > 0
        if nonempty.any():
            t0[nonempty] = np.minimum.reduceat(times.astype(np.float64), offsets[:-1][nonempty])
    return t0


def _steps_of(times: np.ndarray, sample: np.ndarray, t0: np.ndarray, binning: EventBinning, max_steps: int) -> np.ndarray:
    """Step of each event, capped at ``max_steps`` (such events are dropped; the cap keeps huge times from
    overflowing the integer conversion)."""
    if binning.faithful:
        with np.errstate(over="ignore"):  # edges beyond the dtype's range become inf, as in the official loop
            edges = (np.arange(max_steps, dtype=np.float64) * (binning.dt_ms / 1000.0)).astype(times.dtype)
        return np.searchsorted(edges, times, side="left").astype(np.int64)
    steps = np.floor((times.astype(np.float64) - t0[sample]) * 1000.0 / binning.dt_ms)
    return np.minimum(steps, max_steps).astype(np.int64)


def _channels_of(units: np.ndarray, binning: EventBinning) -> tuple[np.ndarray, np.ndarray]:
    """``(keep mask, channel index)`` of each event."""
    units = units.astype(np.int64)
    if binning.faithful:
        keep = units > 0
        return keep, (binning.channels - units) // binning.pool
    return np.ones(units.shape, dtype=bool), units // binning.pool


def _chunks(offsets: np.ndarray):
    """Sample ranges ``[a, b)`` holding about ``_CHUNK_EVENTS`` events each."""
    n = offsets.size - 1
    a = 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + _CHUNK_EVENTS, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def bin_events(
    times: np.ndarray,
    units: np.ndarray,
    offsets: np.ndarray,
    binning: EventBinning,
    source: str = "events",
    first_sample: int = 0,
) -> SparseFrames:
    """Bin concatenated events of many samples into :class:`SparseFrames` (see module docstring).

    Args:
        times: ``[E]`` spike times in seconds (any float dtype; faithful mode compares in this dtype).
        units: ``[E]`` integer input units in ``[0, binning.channels)``.
        offsets: ``[N+1]`` sample boundaries into the event arrays.
        binning: the settings.
        source, first_sample: file name and index of the first sample, for error messages.
    """
    times = np.asarray(times)
    units = np.asarray(units)
    offsets = np.asarray(offsets, dtype=np.int64)
    _check_events(times, units, offsets, binning.channels, source, first_sample)
    if not np.issubdtype(times.dtype, np.floating):
        times = times.astype(np.float64)
    channels = binning.out_channels
    t0 = _first_spikes(times, offsets, binning)
    lengths = _sample_lengths(times, offsets, t0, binning, source, first_sample)
    n = lengths.size
    step_type = _small_uint(int(lengths.max(initial=1)))
    chan_type = _small_uint(channels)
    count_type = _small_uint(1 if binning.binary else int(np.diff(offsets).max(initial=1)))
    per_sample = np.zeros(n, dtype=np.int64)
    steps_parts, chans_parts, counts_parts = [], [], []
    for a, b in _chunks(offsets):
        lo, hi = int(offsets[a]), int(offsets[b])
        sample = np.repeat(np.arange(a, b), np.diff(offsets[a:b + 1]))
        width = int(lengths[a:b].max())
        steps = _steps_of(times[lo:hi], sample, t0, binning, width)
        keep, chans = _channels_of(units[lo:hi], binning)
        keep &= steps < lengths[sample]
        local = (sample[keep] - a) * width + steps[keep]
        # One id per (sample, step, channel) cell: sorting the ids groups events by cell in the
        # order sample → step → channel, and the run lengths are the counts.
        cells, counts = np.unique(local * channels + chans[keep], return_counts=True)
        per_sample[a:b] = np.diff(np.searchsorted(cells, np.arange(b - a + 1) * (width * channels)))
        rest, cell_chans = np.divmod(cells, channels)
        steps_parts.append((rest % width).astype(step_type))
        chans_parts.append(cell_chans.astype(chan_type))
        counts_parts.append(np.ones(counts.size, count_type) if binning.binary else counts.astype(count_type))
    offsets_out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_sample, out=offsets_out[1:])
    return SparseFrames(
        _concat(steps_parts, step_type),
        _concat(chans_parts, chan_type),
        _concat(counts_parts, count_type),
        offsets_out,
        lengths,
        channels,
    )


def _concat(parts: list, dtype: np.dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _small_uint(bound: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if bound <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def frames_reference(times: np.ndarray, units: np.ndarray, binning: EventBinning) -> np.ndarray:
    """One sample's ``[T, C]`` frames by a plain per-event loop (tests compare :func:`bin_events` to it).

    Faithful mode follows the official per-step loop: step ``i`` takes the unused events with
    ``t <= i·dt``; unit 0 is dropped and unit ``u`` goes to channel ``C - u``.
    """
    times = np.asarray(times)
    t0 = float(times.min()) if (binning.align == "first_spike" and times.size) else 0.0
    fixed = binning.fixed_steps
    if fixed is not None:
        steps = fixed
    elif times.size == 0:
        steps = 1
    else:
        steps = int(math.floor((float(times.max()) - t0) * 1000.0 / binning.dt_ms)) + 1
    out = np.zeros((steps, binning.out_channels))
    if binning.faithful:
        used = np.zeros(times.size, dtype=bool)
        for i in range(steps):
            edge = np.asarray(i * (binning.dt_ms / 1000.0)).astype(times.dtype)
            now = ~used & (times <= edge)
            for u in np.asarray(units)[now]:
                if u > 0:
                    out[i, (binning.channels - int(u)) // binning.pool] += 1
            used |= now
    else:
        for t, u in zip(times, units):
            step = int(math.floor((float(t) - t0) * 1000.0 / binning.dt_ms))
            if step < steps:
                out[step, int(u) // binning.pool] += 1
    return np.minimum(out, 1) if binning.binary else out
