import math

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from spikescale.cli import main
from spikescale.data import audio as audio_module
from spikescale.data.audio import AudioError, CochlearEncoder, centre_frequencies, encode_files, read_wav, resample
from spikescale.data.events import EventBinning
from spikescale.data.heidelberg import SpikeFile, SpikeFileDataset


def _tone(freq=1000.0, rate=8000, seconds=0.3, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def test_read_wav_formats(tmp_path):
    tone = _tone()
    wavfile.write(tmp_path / "i16.wav", 8000, (tone * 32767).astype(np.int16))
    wavfile.write(tmp_path / "u8.wav", 8000, (tone * 127 + 128).astype(np.uint8))
    wavfile.write(tmp_path / "f32.wav", 8000, tone)
    wavfile.write(tmp_path / "stereo.wav", 8000, np.stack([tone, np.zeros_like(tone)], axis=1))
    for name, tolerance in [("i16", 1e-4), ("u8", 1e-2), ("f32", 0)]:
        samples, rate = read_wav(tmp_path / f"{name}.wav")
        assert rate == 8000 and samples.dtype == np.float32 and np.allclose(samples, tone, atol=tolerance)
    stereo, _ = read_wav(tmp_path / "stereo.wav")
    assert np.allclose(stereo, tone / 2)


def test_bad_wav_files_are_named(tmp_path):
    wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, np.int16))
    with pytest.raises(AudioError, match="empty.wav: the file holds no audio"):
        read_wav(tmp_path / "empty.wav")
    (tmp_path / "noise.wav").write_bytes(b"RIFF\x00\x01garbage" * 3)
    with pytest.raises(AudioError, match="noise.wav: not a readable WAV"):
        read_wav(tmp_path / "noise.wav")
    wavfile.write(tmp_path / "good.wav", 8000, (_tone() * 30000).astype(np.int16))
    (tmp_path / "cut.wav").write_bytes((tmp_path / "good.wav").read_bytes()[:30])
    with pytest.raises(AudioError, match="cut.wav"):
        read_wav(tmp_path / "cut.wav")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_wav(tmp_path / "missing.wav")


@pytest.mark.parametrize("scale", ["erb", "mel"])
def test_centre_frequencies(scale):
    f = centre_frequencies(50, 100.0, 4000.0, scale)
    assert f[0] == pytest.approx(100.0) and f[-1] == pytest.approx(4000.0) and np.all(np.diff(f) > 0)
    if scale == "erb":
        steps = np.diff(21.4 * np.log10(1 + 0.00437 * f))
        assert np.allclose(steps, steps[0])


def _loudest_channel_frequency(encoder, samples, rate):
    envelope = encoder.envelope(resample(samples, rate, encoder.sample_rate))
    return centre_frequencies(encoder.channels, encoder.f_min, encoder.top_frequency, encoder.scale)[int(envelope.mean(0).argmax())]


@pytest.mark.parametrize("rate", [8000, 22050])
def test_tone_excites_the_matching_channel_at_any_sample_rate(rate):
    encoder = CochlearEncoder(channels=64, sample_rate=16000)
    loudest = _loudest_channel_frequency(encoder, _tone(1000.0, rate), rate)
    assert 900 < loudest < 1100
    times, units = encoder.encode(_tone(1000.0, rate), rate)
    peak = int(np.bincount(units, minlength=64).argmax())
    assert 900 < centre_frequencies(64, 50.0, 7200.0)[peak] < 1100


def test_encoder_output_schema_and_silence():
    encoder = CochlearEncoder(channels=32, sample_rate=8000)
    times, units = encoder.encode(_tone(), 8000)
    assert times.dtype == np.float32 and units.dtype == np.uint16
    assert times.size > 0 and np.all(np.diff(times) >= 0) and units.max() < 32
    assert times.min() > 0 and times.max() <= 0.3 + encoder.step_ms / 1000
    silent_times, _ = encoder.encode(np.zeros(800, np.float32), 8000)
    assert silent_times.size == 0


def test_lif_generator_follows_its_equation():
    encoder = CochlearEncoder(channels=3, sample_rate=8000, gain=2.0)
    envelope = torch.rand(40, 1, 3)
    counts = encoder.spike_counts(envelope)[:, 0]
    beta = math.exp(-encoder.step_ms / encoder.tau_ms)
    u, s = np.zeros(3), np.zeros(3)
    for t in range(40):
        u = beta * u + (1 - beta) * 2.0 * envelope[t, 0].double().numpy() - s
        s = (u > 1.0).astype(float)
        assert np.array_equal(counts[t].numpy(), s)


def test_crossing_generator_counts_level_crossings():
    encoder = CochlearEncoder(channels=2, sample_rate=8000, gain=1.0, spikes="crossing")
    envelope = torch.tensor([[0.5, 0.0], [1.5, 2.7], [3.2, 2.9], [0.1, 3.1]])[:, None, :]
    counts = encoder.spike_counts(envelope)[:, 0]
    assert counts.tolist() == [[0, 0], [1, 2], [2, 0], [0, 1]]


@pytest.mark.parametrize("budget", [1 << 23, 4000])  # one generator run, or one per recording
def test_batch_encoding_equals_one_by_one(budget, monkeypatch):
    monkeypatch.setattr(audio_module, "_GENERATOR_BUDGET", budget)
    encoder = CochlearEncoder(channels=16, sample_rate=8000)
    clips = [(_tone(500.0, 8000, 0.2), 8000), (_tone(2000.0, 16000, 0.35), 16000), (_tone(300.0, 8000, 0.05), 8000)]
    batch = encoder.encode_batch(clips)
    for (samples, rate), (times, units) in zip(clips, batch):
        one_times, one_units = encoder.encode(samples, rate)
        assert np.array_equal(times, one_times) and np.array_equal(units, one_units)


@pytest.mark.parametrize("kwargs,message", [({"channels": 0}, "channels"), ({"scale": "bark"}, "scale"),
                                            ({"spikes": "poisson"}, "spike generator"), ({"f_max": 9000.0}, "f_max")])
def test_bad_encoder_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CochlearEncoder(sample_rate=16000, **kwargs)


def test_encoded_files_read_as_shd(tmp_path):
    paths = []
    for i, freq in enumerate([400.0, 1600.0]):
        paths.append(tmp_path / f"{i}.wav")
        wavfile.write(paths[-1], 8000, (_tone(freq) * 30000).astype(np.int16))
    encoder = CochlearEncoder(channels=20, sample_rate=8000)
    out = encode_files(paths, tmp_path / "enc.h5", encoder, [0, 1], class_names=["low", "high"], source="test", progress=False)
    source = SpikeFile(out)
    assert source.class_names == ["low", "high"] and source.attrs["source"] == "test"
    assert "channels" in source.attrs["encoder"]
    data = SpikeFileDataset(out, EventBinning(dt_ms=5.0, channels=20))
    (x0, y0), (x1, y1) = data[0], data[1]
    assert (y0, y1) == (0, 1) and x0.shape[1] == 20
    assert x0.sum(0).argmax() < x1.sum(0).argmax()  # the higher tone drives higher channels


def test_cli_encode_audio_labels_from_folders(tmp_path, capsys):
    for label in ("no", "yes"):
        (tmp_path / "in" / label).mkdir(parents=True)
        for k in range(2):
            wavfile.write(tmp_path / "in" / label / f"{k}.wav", 16000, (_tone(700.0 * (k + 1), 16000, 0.1) * 20000).astype(np.int16))
    out = tmp_path / "out.h5"
    assert main(["data", "encode-audio", "--in", str(tmp_path / "in"), "--out", str(out), "--channels", "8"]) == 0
    source = SpikeFile(out)
    assert source.class_names == ["no", "yes"] and source.labels.tolist() == [0, 0, 1, 1]
    assert main(["data", "info", str(out)]) == 0
    assert "4 samples, 2 classes" in capsys.readouterr().out


def test_cli_encode_audio_fsdd_names(tmp_path):
    for name in ("3_alice_0.wav", "7_bob_12.wav"):
        wavfile.write(tmp_path / name, 8000, (_tone() * 20000).astype(np.int16))
    out = tmp_path / "out.h5"
    files = [str(tmp_path / "3_alice_0.wav"), str(tmp_path / "7_bob_12.wav")]
    assert main(["data", "encode-audio", "--in", *files, "--out", str(out), "--channels", "8", "--sample-rate", "8000"]) == 0
    source = SpikeFile(out)
    assert source.labels.tolist() == [3, 7] and source.speakers.tolist() == [0, 1]
    assert main(["data", "encode-audio", "--in", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_filters_are_causal_gammatones_with_unit_gain():
    from spikescale.data.audio import _filter_responses

    size, rate = 1 << 15, 8000
    responses = _filter_responses(5, 50.0, 2000.0, "erb", rate, size)
    centres = centre_frequencies(5, 50.0, 2000.0, "erb")
    bins = np.round(centres * size / rate).astype(int)
    assert np.allclose(responses[np.arange(5), bins].abs().numpy(), 1.0, atol=0.01)
    impulse = torch.fft.irfft(responses.to(torch.complex128), n=size).abs()
    peak = impulse.max(dim=1).values
    assert (impulse[:, size // 2:].max(dim=1).values < 1e-3 * peak).all()  # < 0.1 % before t = 0 (the wrapped end)
