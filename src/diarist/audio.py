"""Decode anything ffmpeg reads into 16 kHz mono float32, in blocks, so memory stays flat."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from diarist.errors import (
    AudioFileNotFoundError,
    CorruptAudioError,
    EmptyAudioFileError,
    NotAudioError,
    ZeroLengthAudioError,
)

SAMPLE_RATE = 16_000
# ffmpeg's decoders refuse more channels than this (FF_SANE_NB_CHANNELS).
MAX_FILE_CHANNELS = 512
# An array's channel axis is its shorter one; more channels than this is more likely a mistake
# (a batch, a spectrogram) than a recording.
MAX_ARRAY_CHANNELS = 64
# Rates a waveform array may be resampled from: telephone speech to high-resolution audio.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 384_000


# Effective bandwidth: the highest frequency at which the long-term power spectrum of the
# decoded audio is within SPECTRUM_RANGE_DB of its peak, from non-overlapping 32 ms frames.
SPECTRUM_FRAME = 512
SPECTRUM_RANGE_DB = 50.0
SPECTRUM_LOWEST = 100.0  # Hz: a DC offset or mains hum below this would set the peak
# Below this the speaker embeddings lose too much to tell voices apart reliably: the pyannote
# sample (3.8 kHz) low-passed at 3.4 kHz or less comes out as one speaker (docs/benchmarks.md,
# "output").
MIN_SPEAKER_BANDWIDTH = 3500.0


# The demuxers diarist opens: audio and video container formats. Playlists and scripts (concat,
# HLS, DASH, image sequences, ...) are left out: they make ffmpeg open other files or URLs, so a
# small upload could read far more audio than it holds, or other files of the server.
DEMUXERS = (
    "aac,ac3,aiff,amr,ape,asf,au,avi,caf,dsf,dts,eac3,flac,flv,gsm,ircam,loas,matroska,mlp,mov,mp3,"
    "mpc,mpc8,mpeg,mpegts,mxf,nut,ogg,oma,rm,shn,tak,truehd,tta,voc,w64,wav,wv,xwma"
)


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise AudioFileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise NotAudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise EmptyAudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(
            str(path),
            metadata_errors="ignore",
            container_options={"format_whitelist": DEMUXERS, "protocol_whitelist": "file"},
        )
    except av.error.PermissionError as e:
        raise AudioFileNotFoundError(f"{path}: permission denied") from e
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise NotAudioError(f"{path}: not an audio or video file that ffmpeg can read ({e})") from e
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path}: no audio track found (is it an audio or video file?)")
    return container


def duration_seconds(path: str | os.PathLike) -> float | None:
    """Duration announced by the container, if any (it is a hint: decoding is the truth)."""
    with _open(Path(path)) as container:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    return None


def measured_seconds(path: str | os.PathLike) -> float:
    """Duration from the audio packets' timestamps, for containers that announce none (a FLAC or
    WebM written to a pipe): reads the whole file, but decodes nothing."""
    with _open(Path(path)) as container:
        stream = container.streams.audio[0]
        end = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    end = max(end, packet.pts + (packet.duration or 0))
        except av.error.FFmpegError as e:
            raise CorruptAudioError(f"{path}: corrupt audio data ({e})") from e
        return float(end * stream.time_base) if stream.time_base is not None else 0.0


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """The mean of a decoded frame's channels, as float32 in [-1, 1].

    Done here rather than by ffmpeg's resampler: its mixing matrix follows surround conventions
    (the third channel of a 3-channel file, or the fourth of 5.1, is taken for a low-frequency
    channel and dropped) and fails on channel counts without a named layout, such as 32.
    """
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, frame.layout.nb_channels).T
    return _as_float(data).mean(axis=0, dtype=np.float32)


def _as_float(data: np.ndarray) -> np.ndarray:
    """PCM samples of any integer or float type as float32 in [-1, 1] (integers are full scale)."""
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128) / 128
    if np.issubdtype(data.dtype, np.integer):
        return (data / -float(np.iinfo(data.dtype).min)).astype(np.float32)
    return data.astype(np.float32, copy=False)


def stream_audio(path: str | os.PathLike, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of 16 kHz mono float32 samples (the last one may be shorter).

    The first audio track is decoded, its channels averaged with equal weights (any number of
    them), and the rate converted by ffmpeg. Raises a subclass of ``AudioError`` for a missing,
    empty, unreadable, corrupt or silent file.
    """
    path = Path(path)
    block = int(block_seconds * SAMPLE_RATE)
    with _open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_samples = total = 0

        def decoded() -> Iterator[av.AudioFrame]:
            try:
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        mono = av.AudioFrame.from_ndarray(_mono(frame)[None, :], format="flt", layout="mono")
                        mono.sample_rate = frame.sample_rate
                        yield from resampler.resample(mono)
                yield from resampler.resample(None)
            except av.error.FFmpegError as e:
                if total == 0 and not stream.channels:
                    # ffmpeg leaves the channel count at 0 when it is beyond what it decodes.
                    raise NotAudioError(
                        f"{path}: ffmpeg cannot decode this audio track's channels (it reads 1 to {MAX_FILE_CHANNELS})"
                    ) from e
                raise CorruptAudioError(f"{path}: corrupt audio data after {total / SAMPLE_RATE:.1f} s ({e})") from e

        for frame in decoded():
            samples = frame.to_ndarray().reshape(-1)
            finite = np.isfinite(samples)
            if not finite.all():  # float formats can store them; the models cannot take them
                at = (total + np.argmin(finite)) / SAMPLE_RATE
                raise CorruptAudioError(f"{path}: NaN or infinite samples at {at:.2f} s")
            pending.append(samples)
            pending_samples += len(samples)
            total += len(samples)
            while pending_samples >= block:
                joined = np.concatenate(pending)
                yield joined[:block]
                pending, pending_samples = [joined[block:]], pending_samples - block
        if total == 0:
            raise ZeroLengthAudioError(f"{path}: the audio track decodes to no samples")
        if pending_samples:
            yield np.concatenate(pending)


@dataclass
class SpectrumMeter:
    """Long-term power spectrum of 16 kHz audio, summed block by block as it is decoded."""

    power: np.ndarray = field(default_factory=lambda: np.zeros(SPECTRUM_FRAME // 2 + 1))
    carry: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def metered(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield `blocks` unchanged, adding each to the spectrum on the way."""
        for block in blocks:
            samples = np.concatenate([self.carry, block])
            whole = len(samples) // SPECTRUM_FRAME * SPECTRUM_FRAME
            frames = samples[:whole].reshape(-1, SPECTRUM_FRAME)
            self.power += (np.abs(np.fft.rfft(frames * np.hanning(SPECTRUM_FRAME), axis=1)) ** 2).sum(axis=0)
            self.carry = samples[whole:]
            yield block

    def bandwidth(self) -> float | None:
        """Highest frequency (Hz) within SPECTRUM_RANGE_DB of the spectrum's peak above
        SPECTRUM_LOWEST; None when nothing is there."""
        lowest = int(np.ceil(SPECTRUM_LOWEST * SPECTRUM_FRAME / SAMPLE_RATE))
        peak = self.power[lowest:].max()
        if peak <= 0:
            return None
        strong = np.flatnonzero(self.power[lowest:] >= peak * 10 ** (-SPECTRUM_RANGE_DB / 10))
        return float((lowest + strong[-1]) * SAMPLE_RATE / SPECTRUM_FRAME)


# Waveform overview for the web page: the largest |sample| per bucket, 0..127. Buckets are
# PEAKS_MAX_RATE per second, made coarser by whole factors so that no file gives more than
# PEAKS_MAX_VALUES of them (a 3-hour file: 93k values, about 300 kB of JSON).
PEAKS_MAX_RATE = 50
PEAKS_MAX_VALUES = 100_000
PEAKS_SCALE = 127
PEAKS_BUCKET = SAMPLE_RATE // PEAKS_MAX_RATE  # samples in a bucket at the finest rate


@dataclass(frozen=True)
class Peaks:
    """A waveform overview: `rate` values per second, each the largest |sample| of its bucket, 0..127."""

    duration: float  # seconds of decoded audio
    rate: float
    values: bytes  # one uint8 (0..127) per bucket: stored as it is, JSON only when asked

    def to_dict(self) -> dict[str, Any]:
        """The `GET /v1/jobs/{jobId}/peaks` body."""
        return {"duration": round(self.duration, 3), "rate": self.rate, "peaks": list(self.values)}


@dataclass
class PeaksMeter:
    """Collects `Peaks` from the 16 kHz blocks of a decode that runs anyway (the pipeline's), so the
    overview costs no second decode. Memory: one float32 per 20 ms (14 MB for 24 h of audio)."""

    parts: list[np.ndarray] = field(default_factory=list)
    carry: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    samples: int = 0

    def metered(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield `blocks` unchanged, taking each one's bucket maxima on the way."""
        for block in blocks:
            self.samples += len(block)
            joined = np.concatenate([self.carry, block]) if len(self.carry) else block
            whole = len(joined) // PEAKS_BUCKET * PEAKS_BUCKET
            if whole:
                self.parts.append(np.abs(joined[:whole].reshape(-1, PEAKS_BUCKET)).max(axis=1))
            self.carry = joined[whole:]
            yield block

    def peaks(self) -> Peaks:
        """The overview of everything metered so far."""
        fine = self.parts + ([np.abs(self.carry).max(keepdims=True)] if len(self.carry) else [])
        maxima = np.concatenate(fine) if fine else np.zeros(0, dtype=np.float32)
        # A whole number of fine buckets per value keeps every value's span exact.
        factor = max(1, -(-len(maxima) // PEAKS_MAX_VALUES))
        if factor > 1:
            padded = np.pad(maxima, (0, -len(maxima) % factor))
            maxima = padded.reshape(-1, factor).max(axis=1)
        scaled = np.rint(np.minimum(maxima, 1.0) * PEAKS_SCALE).astype(np.uint8)
        return Peaks(self.samples / SAMPLE_RATE, PEAKS_MAX_RATE / factor, scaled.tobytes())


def bandwidth_warnings(bandwidth: float | None) -> list[str]:
    """A warning when the audio's effective bandwidth is too narrow to tell speakers apart reliably."""
    if bandwidth is None or bandwidth >= MIN_SPEAKER_BANDWIDTH:
        return []
    return [
        f"The audio carries sound only up to about {bandwidth / 1000:.1f} kHz (a low-bitrate or narrow-band "
        f"recording): below {MIN_SPEAKER_BANDWIDTH / 1000:.1f} kHz voices sound alike to the speaker model, so "
        "different people may be reported as one speaker."
    ]


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array (for short files and tests)."""
    return np.concatenate(list(stream_audio(path)))


def as_mono_16k(waveform: Any, sample_rate: int | None) -> np.ndarray:
    """Turn an in-memory waveform into 16 kHz mono float32.

    `waveform` is a NumPy array, a torch tensor or anything ``np.asarray`` takes, shaped
    (samples,), (channels, samples) or (samples, channels): the channel axis is the shorter one and
    holds at most 64 channels, which are averaged. Float samples are taken as they are (full
    scale is ±1), integer ones as PCM (an int16 32767 is 1.0). `sample_rate` (Hz) is required:
    an array does not carry it. Raises ``ValueError`` for anything else, and for NaN or
    infinite samples.
    """
    rate = _check_sample_rate(sample_rate)
    if hasattr(waveform, "detach"):  # a torch tensor, on any device; numpy has no bfloat16
        waveform = waveform.detach().cpu()
        waveform = (waveform.float() if waveform.is_floating_point() else waveform).numpy()
    data = np.asarray(waveform)
    if data.dtype == bool or not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"a waveform holds integer or float samples, not {data.dtype}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported as infinite below
        mono = _mono_samples(data)
    if not np.isfinite(mono).all():
        raise ValueError("the waveform holds NaN or infinite samples (or ones beyond float32's range)")
    if rate != SAMPLE_RATE and len(mono):
        from scipy.signal import resample_poly

        divisor = np.gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    return mono


def _mono_samples(data: np.ndarray) -> np.ndarray:
    """A (samples,), (channels, samples) or (samples, channels) array averaged to float32 mono."""
    if data.ndim == 2 and data.size:
        channel_axis = int(np.argmin(data.shape))
        channels = data.shape[channel_axis]
        if channels > MAX_ARRAY_CHANNELS or (channels > 1 and data.shape[0] == data.shape[1]):
            raise ValueError(
                f"cannot tell channels from samples in a waveform of shape {data.shape}: pass (samples,), "
                f"(channels, samples) or (samples, channels) with at most {MAX_ARRAY_CHANNELS} channels, "
                "fewer than samples"
            )
        return _as_float(data).mean(axis=channel_axis, dtype=np.float32)
    if data.ndim in (1, 2):
        return _as_float(data.reshape(-1))
    raise ValueError(f"a waveform is (samples,), (channels, samples) or (samples, channels), not {data.shape}")


def _check_sample_rate(sample_rate: int | None) -> int:
    if sample_rate is None:
        raise ValueError(
            "sample_rate is required with a waveform array (e.g. sample_rate=16000): an array does not carry its rate"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    return int(sample_rate)
