r"""Audio → spikes: a cochlear-style encoder whose output is in the SHD schema.

In the spirit of the inner-ear model behind SHD (Cramer et al. 2020), much simplified:

1. **Input**: a WAV file, mixed to mono, resampled to ``sample_rate`` and scaled to peak amplitude 1.
2. **Basilar membrane**: ``channels`` fourth-order gammatone band-pass filters with centre
   frequencies :math:`f_c` equally spaced on the ERB-rate scale
   :math:`E(f) = 21.4\log_{10}(1 + 0.00437 f)` (Glasberg & Moore 1990) or on the mel scale
   :math:`m(f) = 2595\log_{10}(1 + f/700)`, between ``f_min`` and ``f_max``; bandwidth
   :math:`b = 1.019\,\mathrm{ERB}(f_c)`, :math:`\mathrm{ERB}(f) = 24.7\,(0.00437 f + 1)` Hz. Each filter is
   applied in the frequency domain (zero-padded FFT) with the spectrum of the impulse response
   :math:`t^3 e^{-2\pi b t}\cos(2\pi f_c t)`,
   :math:`H(f) = (1 + j(f - f_c)/b)^{-4} + (1 + j(f + f_c)/b)^{-4}` (gain ≈ 1 at :math:`f_c`), cut at the
   Nyquist frequency: causal except for the top channels, whose pass band reaches Nyquist and which ring
   slightly before their peak (≈ 6 % of it at ``f_max = 0.45·sample_rate``).
3. **Inner hair cell**: half-wave rectification :math:`\max(y, 0)`, mean over each step of ``step_ms``
   (low-pass and decimation), then power-law compression :math:`e_t = \bar y_t^{\,p}` (``compression`` p).
4. **Spikes**, per channel: a soft-reset LIF (the project's :func:`~spikescale.functional.lif.lif_sequence`)
   with :math:`u_t = \beta u_{t-1} + (1-\beta)\,g\,e_t - \vartheta s_{t-1}`, :math:`\beta = e^{-\Delta/\tau}`
   (:math:`\Delta` = ``step_ms`` rounded to whole samples),
   :math:`s_t = H(u_t - \vartheta)`, :math:`\vartheta = 1`; or level crossing of :math:`g\,e_t` with
   :math:`\delta = 1` (:func:`~spikescale.data.encoders.level_crossing`, upward crossings).
   A spike of step :math:`k` is stamped at the end of its window, :math:`(k+1)\Delta`.

Output: ``(times [n] seconds, units [n])`` with unit 0 the lowest centre frequency; :func:`encode_files`
writes many files as one SHD-schema HDF5 (so SHD binning, caching and splits apply unchanged).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import struct
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from ..functional.lif import LIFState, lif_sequence
from .encoders import level_crossing
from .heidelberg import write_spike_file

__all__ = [
    "AudioError",
    "SCALES",
    "SPIKE_MODES",
    "CochlearEncoder",
    "read_wav",
    "resample",
    "resampling_ratio",
    "centre_frequencies",
    "encode_files",
]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

SCALES = ("erb", "mel")
SPIKE_MODES = ("lif", "crossing")

# Zero padding after the signal so the filters' decaying tails do not wrap around (the lowest
# filter, 50 Hz with a 31 Hz bandwidth, has decayed below 1e-3 of its peak after 80 ms).
_TAIL_S = 0.08
_CHANNEL_BLOCK = 128
_FILE_BATCH = 64  # recordings read per encode_batch call in encode_files
_GENERATOR_BUDGET = 1 << 23  # values (steps × recordings × channels) per spike-generator run
_STREAMED_SIZE = 0xFFFFFFFF  # RIFF size written by streaming encoders that do not know the length


class AudioError(ValueError):
    """An audio file cannot be used (the message names the file)."""


def read_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """``(mono float32 samples, sample rate)`` of a PCM or float WAV file.

    Integer PCM is scaled to [-1, 1); float data are kept as stored. Stereo (or more channels) is averaged
    to mono. Empty, truncated (data ending before the size in the header) or non-WAV files, a zero sample
    rate and NaN, Inf or values beyond the float32 range raise :class:`AudioError` naming the file.
    """
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise AudioError(f"{path}: cannot read ({err})") from None
    streamed = raw[4:8] == struct.pack("<I", _STREAMED_SIZE)
    missing = _missing_data_bytes(raw)
    if missing and not streamed:
        raise AudioError(f"{path}: truncated WAV file (the data chunk ends {missing} bytes before the size in its header)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=wavfile.WavFileWarning)  # unknown chunks are skipped
            if not streamed:
                warnings.filterwarnings("error", message="Reached EOF prematurely", category=wavfile.WavFileWarning)
            # From memory, so a header announcing gigabytes reads only the bytes that exist.
            rate, data = wavfile.read(io.BytesIO(raw))
    except wavfile.WavFileWarning as err:
        raise AudioError(f"{path}: truncated WAV file ({err})") from None
    except Exception as err:  # scipy's parser fails on malformed headers with assorted exception types
        raise AudioError(f"{path}: not a readable WAV file ({type(err).__name__}: {err})") from None
    if data.size == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if rate <= 0:
        raise AudioError(f"{path}: invalid sample rate {rate}")
    if data.dtype == np.uint8:
        samples = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:  # float data: average in float64, so large values cannot overflow on the way
        samples = data.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf = NaN and overflow are reported below
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        samples = samples.astype(np.float32)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: the samples contain NaN, Inf or values beyond the float32 range")
    return samples, int(rate)


def _missing_data_bytes(raw: bytes) -> int:
    """Bytes the ``data`` chunk declares beyond the end of ``raw`` (0 if complete, streamed or not found).

    scipy returns a short recording without a warning when only the chunk's size field overstates it.
    """
    offset = 12  # after "RIFF", the RIFF size and "WAVE"
    while offset + 8 <= len(raw):
        chunk, size = raw[offset: offset + 4], struct.unpack("<I", raw[offset + 4: offset + 8])[0]
        if chunk == b"data":
            return 0 if size == _STREAMED_SIZE else max(0, size - (len(raw) - offset - 8))
        offset += 8 + size + (size & 1)
    return 0


def resampling_ratio(rate: int, target: int) -> Fraction:
    """``target / rate`` as the polyphase factors ``up / down`` with ``down <= 1000``.

    Raises ``ValueError`` where no such fraction is within 0.1 % of the true ratio (rates more than
    2000 times apart), which would change the pitch or leave no samples.
    """
    exact = Fraction(int(target), int(rate))
    ratio = exact.limit_denominator(1000)
    if ratio == 0 or abs(ratio - exact) > exact / 1000:
        raise ValueError(
            f"cannot resample {rate} Hz audio to {target} Hz (the ratio has no close fraction with denominator <= 1000); "
            f"is the sample rate in the header right?"
        )
    return ratio


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (see :func:`resampling_ratio`)."""
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    ratio = resampling_ratio(rate, target)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def _erb_rate(f):
    return 21.4 * np.log10(1.0 + 0.00437 * f)


def _erb_rate_inverse(e):
    return (10.0 ** (e / 21.4) - 1.0) / 0.00437


def _mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_inverse(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def centre_frequencies(channels: int, f_min: float, f_max: float, scale: str = "erb") -> np.ndarray:
    """``channels`` centre frequencies (Hz, ascending) equally spaced on the ERB-rate or mel scale."""
    if scale not in SCALES:
        raise ValueError(f"unknown frequency scale {scale!r}; expected one of {SCALES}")
    forward, inverse = (_erb_rate, _erb_rate_inverse) if scale == "erb" else (_mel, _mel_inverse)
    return inverse(np.linspace(forward(f_min), forward(f_max), channels))


@dataclass(frozen=True)
class CochlearEncoder:
    """Audio → spike events (see module docstring for the model).

    Attributes:
        channels: number of filters / output units (700 like SHD; fewer is faster).
        sample_rate: audio is resampled to this rate (Hz).
        f_min, f_max: lowest and highest centre frequency (Hz); ``f_max`` defaults to 0.45·sample_rate.
        scale: ``"erb"`` or ``"mel"`` spacing of the centre frequencies.
        step_ms: hair-cell window and spike-time resolution Δ (rounded to whole samples).
        compression: power-law exponent p.
        gain: scale g of the compressed envelope driving the spike generator.
        spikes: ``"lif"`` or ``"crossing"``.
        tau_ms: LIF membrane time constant τ.
    """

    channels: int = 700
    sample_rate: int = 16000
    f_min: float = 50.0
    f_max: Optional[float] = None
    scale: str = "erb"
    step_ms: float = 0.5
    compression: float = 0.3
    gain: float = 4.5
    spikes: str = "lif"
    tau_ms: float = 5.0

    def __post_init__(self):
        if not isinstance(self.channels, int) or not 1 <= self.channels <= 65535:
            raise ValueError(f"channels must be an int in [1, 65535], got {self.channels!r}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown frequency scale {self.scale!r}; expected one of {SCALES}")
        if self.spikes not in SPIKE_MODES:
            raise ValueError(f"unknown spike generator {self.spikes!r}; expected one of {SPIKE_MODES}")
        if not 0 < self.f_min < self.top_frequency <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 < f_min ({self.f_min}) < f_max ({self.top_frequency}) <= sample_rate/2 ({self.sample_rate / 2})"
            )
        for name in ("step_ms", "compression", "gain", "tau_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def top_frequency(self) -> float:
        return float(self.f_max) if self.f_max is not None else 0.45 * self.sample_rate

    @property
    def hop(self) -> int:
        """Samples per step."""
        return max(1, round(self.sample_rate * self.step_ms / 1000.0))

    def key(self) -> str:
        """Stable text form of the settings (part of cache keys and file attributes)."""
        return json.dumps(asdict(self), sort_keys=True)

    def envelope(self, samples: np.ndarray) -> torch.Tensor:
        """Compressed hair-cell envelope ``[steps, channels]`` of mono samples at ``sample_rate``."""
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        peak = x.abs().max()
        if peak > 0:
            x = x / peak
        hop = self.hop
        steps = max(1, math.ceil(x.numel() / hop))
        size = 1 << math.ceil(math.log2(steps * hop + _TAIL_S * self.sample_rate))
        spectrum = torch.fft.rfft(x, n=size)
        responses = _filter_responses(self.channels, self.f_min, self.top_frequency, self.scale, self.sample_rate, size)
        out = torch.empty(steps, self.channels)
        for lo in range(0, self.channels, _CHANNEL_BLOCK):
            hi = min(lo + _CHANNEL_BLOCK, self.channels)
            y = torch.fft.irfft(spectrum[None, :] * responses[lo:hi], n=size).clamp_(min=0)
            window = y[:, 0: steps * hop: hop].clone()  # sum of each step's samples (strided adds beat a reshape-mean)
            for k in range(1, hop):
                window += y[:, k: steps * hop: hop]
            out[:, lo:hi] = window.T
        return out.mul_(1.0 / hop).pow_(self.compression)

    def spike_counts(self, envelopes: torch.Tensor) -> torch.Tensor:
        """Spike counts ``[steps, batch, channels]`` from envelopes ``[steps, batch, channels]``."""
        drive = self.gain * envelopes
        if self.spikes == "crossing":
            return level_crossing(drive.flatten(1), 1.0, polarity="up").view_as(drive)
        step_ms = 1000.0 * self.hop / self.sample_rate
        beta = torch.full((self.channels,), math.exp(-step_ms / self.tau_ms))
        zeros = torch.zeros(drive.shape[1], self.channels)
        with torch.no_grad():
            spikes, _ = lif_sequence(drive, LIFState(zeros, zeros), beta, 1.0)
        return spikes

    def encode_batch(self, recordings: Sequence[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Events ``(times [n] s, units [n])`` of each ``(mono samples, rate)``, sorted by time.

        Consecutive recordings share one spike-generator run (envelopes zero-padded to the longest,
        at most ``_GENERATOR_BUDGET`` values per tensor); steps after a recording's end are discarded.
        """
        events, group = [], []
        for samples, rate in recordings:
            envelope = self.envelope(resample(samples, rate, self.sample_rate))
            longest = max([e.shape[0] for e in group] + [envelope.shape[0]])
            if group and longest * (len(group) + 1) * self.channels > _GENERATOR_BUDGET:
                events.extend(self._events(group))
                group = []
            group.append(envelope)
        return events + self._events(group) if group else events

    def _events(self, envelopes: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
        lengths = torch.tensor([e.shape[0] for e in envelopes])
        counts = self.spike_counts(torch.nn.utils.rnn.pad_sequence(envelopes)).transpose(0, 1)  # [B, T, C]
        counts[torch.arange(counts.shape[1])[None, :] >= lengths[:, None]] = 0
        batch, steps, units = torch.nonzero(counts, as_tuple=True)  # sorted by recording, then time
        repeats = counts[batch, steps, units].long()
        steps = torch.repeat_interleave(steps, repeats)
        units = torch.repeat_interleave(units, repeats)
        per_sample = torch.bincount(torch.repeat_interleave(batch, repeats), minlength=len(envelopes)).tolist()
        times = ((steps + 1).double() * (self.hop / self.sample_rate)).numpy().astype(np.float32)
        units = units.numpy().astype(np.uint16)
        bounds = np.cumsum([0] + per_sample)
        return [(times[a:b], units[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def encode(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Events of one recording (see :meth:`encode_batch`)."""
        return self.encode_batch([(samples, rate)])[0]

    def read(self, path: PathLike) -> tuple[np.ndarray, int]:
        """:func:`read_wav`, also refusing a sample rate this encoder cannot resample from (errors name the file)."""
        samples, rate = read_wav(path)
        try:
            resampling_ratio(rate, self.sample_rate)
        except ValueError as err:
            raise AudioError(f"{path}: {err}") from None
        return samples, rate

    def encode_file(self, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
        """Events of one WAV file (errors name the file)."""
        return self.encode(*self.read(path))


@functools.lru_cache(maxsize=8)
def _filter_responses(channels: int, f_min: float, f_max: float, scale: str, rate: int, size: int) -> torch.Tensor:
    """``[channels, size//2 + 1]`` complex responses ``G(f - f_c) + G(f + f_c)``, ``G(ν) = (1 + jν/b)^-4``.

    ``(1 + jν/b)^-4 = (1 + (ν/b)²)^-2 · e^{-4j·atan(ν/b)}``; the sum is the spectrum of the real gammatone
    ``t³ e^{-2πbt} cos(2π f_c t)`` scaled to gain ≈ 1 at ``f_c``.
    """
    centres = torch.from_numpy(centre_frequencies(channels, f_min, f_max, scale))
    bandwidth = 1.019 * 24.7 * (0.00437 * centres + 1.0)
    freqs = torch.fft.rfftfreq(size, 1.0 / rate, dtype=torch.float64)

    def pole_cascade(offset: torch.Tensor) -> torch.Tensor:
        detune = offset / bandwidth[:, None]
        return torch.polar((1.0 + detune * detune).pow(-2), -4.0 * torch.atan(detune))

    response = pole_cascade(freqs[None, :] - centres[:, None]) + pole_cascade(freqs[None, :] + centres[:, None])
    return response.to(torch.complex64)


def encode_files(
    paths: Sequence[PathLike],
    out: PathLike,
    encoder: CochlearEncoder,
    labels: Sequence[int],
    *,
    speakers: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    speaker_names: Optional[Sequence[str]] = None,
    names: Optional[Sequence[str]] = None,
    source: str = "",
    progress: bool = True,
) -> Path:
    """Encode WAV files into one SHD-schema HDF5 file ``out`` (written atomically).

    ``names`` (default: the file names) are stored in ``extra/files``; ``source`` (e.g. the data set's
    credit and licence) and the encoder settings are stored as root attributes.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} audio files but {len(labels)} labels")
    if not paths:
        raise ValueError("no audio files to encode")
    # Batch recordings of similar length (file size as proxy) so little of each batch is padding.
    order = sorted(range(len(paths)), key=lambda i: Path(paths[i]).stat().st_size if Path(paths[i]).is_file() else 0)
    samples: list = [None] * len(paths)
    with tqdm(total=len(paths), desc="encoding audio", unit="file", disable=not progress) as bar:
        for lo in range(0, len(order), _FILE_BATCH):
            batch = order[lo: lo + _FILE_BATCH]
            for i, events in zip(batch, encoder.encode_batch([encoder.read(paths[i]) for i in batch])):
                samples[i] = events
            bar.update(len(batch))
    extra = {"files": list(names) if names is not None else [Path(p).name for p in paths]}
    if speaker_names is not None:
        extra["speaker_names"] = list(speaker_names)
    attrs = {"encoder": encoder.key(), "source": source, "format": "SHD schema, written by spikescale"}
    return write_spike_file(
        out, samples, labels, speakers=speakers, class_names=class_names, extra=extra, attrs=attrs
    )
