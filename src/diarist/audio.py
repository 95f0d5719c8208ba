"""Decode anything ffmpeg reads into 16 kHz mono float32, in blocks, so memory stays flat."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise AudioFileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise NotAudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise EmptyAudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
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


def stream_audio(path: str | os.PathLike, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of 16 kHz mono float32 samples (the last one may be shorter).

    The first audio track is decoded, channels are averaged and the rate converted by ffmpeg.
    Raises a subclass of ``AudioError`` for a missing, empty, unreadable, corrupt or silent file.
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
                        yield from resampler.resample(frame)
                yield from resampler.resample(None)
            except av.error.FFmpegError as e:
                raise CorruptAudioError(f"{path}: corrupt audio data after {total / SAMPLE_RATE:.1f} s ({e})") from e

        for frame in decoded():
            samples = frame.to_ndarray().reshape(-1)
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


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array (for short files and tests)."""
    return np.concatenate(list(stream_audio(path)))


def as_mono_16k(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Turn an in-memory waveform, (samples,) or (channels, samples), into 16 kHz mono float32."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=0)
    if waveform.ndim != 1:
        raise ValueError(f"expected a (samples,) or (channels, samples) waveform, got shape {waveform.shape}")
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        divisor = np.gcd(sample_rate, SAMPLE_RATE)
        waveform = resample_poly(waveform, SAMPLE_RATE // divisor, sample_rate // divisor).astype(np.float32)
    return waveform
