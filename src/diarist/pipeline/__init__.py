"""The diarization pipeline: segmentation -> embeddings -> clustering -> (resegmentation) -> reconstruction.

Audio is read once, in pages of consecutive windows, so memory does not grow with duration:
each page is segmented and embedded, then only the small per-window outputs are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diarist.audio import PeaksMeter, SpectrumMeter, as_mono_16k, bandwidth_warnings, duration_seconds, stream_audio
from diarist.engine import Engine, python_engine
from diarist.errors import ZeroLengthAudioError
from diarist.hooks import Fraction, Hook, StageTimes, fan_out
from diarist.nets.pyannet import FRAME_STEP_SAMPLES, RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES
from diarist.pipeline.clustering import Clustering, SpeakerBounds, cluster_embeddings, speaker_centroids
from diarist.pipeline.config import CONFIGS, PipelineConfig
from diarist.pipeline.embedding import FEATURE_STEP_SAMPLES, backbone_features, pool_embeddings
from diarist.pipeline.parallel import release_freed_memory, threaded_map
from diarist.pipeline.reconstruction import reconstruct, speaker_segments
from diarist.pipeline.resegmentation import (
    SegmentEmbeddings,
    resegment,
    segment_embeddings,
    segment_middles,
    segment_sources,
)
from diarist.pipeline.segmentation import segment_windows, window_count
from diarist.result import DiarizationResult
from diarist.vocabulary import DEFAULT_MODEL

PAGE_WINDOWS = 128  # windows read, segmented and embedded together
Progress = Callable[[float], None]


@dataclass
class WindowAnalysis:
    """Everything later steps need from the audio, per 10 s window."""

    activity: np.ndarray  # (windows, 589, 3) bool
    certainty: np.ndarray  # (windows, 589) float32
    embeddings: np.ndarray  # (windows, 3, 192) float32, NaN for silent local speakers
    clean_seconds: np.ndarray  # (windows, 3)
    num_samples: int
    segments: SegmentEmbeddings | None = None  # for resegmentation only
    bandwidth: float | None = None  # Hz, measured while decoding: narrow-band audio gets its own cut


def _speech_frames(offsets: list[int], activity: np.ndarray, total_frames: int) -> np.ndarray:
    """Flag the 20 ms backbone frames in which any window of the page detects speech."""
    speech = np.zeros(total_frames, dtype=bool)
    frames = np.arange(activity.shape[1]) * FRAME_STEP_SAMPLES + RECEPTIVE_FIELD_SAMPLES // 2
    for offset, window in zip(offsets, activity, strict=True):
        talking = frames[window.any(axis=1)] + offset
        speech[np.minimum(talking // FEATURE_STEP_SAMPLES, total_frames - 1)] = True
    return speech


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """The pages' arrays end to end; `parts` is emptied as it is copied, so that the pages and the
    whole never all sit in memory at once (precision-2's pages hold 40 MB an hour)."""
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    done = 0
    while parts:
        part = parts.pop(0)
        out[done : done + len(part)] = part
        done += len(part)
    return out


def _join_segments(pages: list[SegmentEmbeddings]) -> SegmentEmbeddings:
    """The pages' segment embeddings end to end; `pages` is emptied, as `_join` empties its list."""
    scored, vectors = [page.scored for page in pages], [page.vectors for page in pages]
    pages.clear()
    return SegmentEmbeddings(_join(scored), _join(vectors))


def _analyse_page(
    audio: np.ndarray,
    offsets: list[int],
    config: PipelineConfig,
    engine: Engine,
    hook: Hook,
    tick: Callable[[str, float], None],
) -> WindowAnalysis:
    """Segment and embed the windows of one page; `offsets` are relative to `audio`.

    `tick(step, done)` hears the fraction of the page that `step` has done, often enough for a job
    to notice a cancel; `hook` hears each step's end, with what it made.
    """
    batches = [offsets[i : i + config.batch_size] for i in range(0, len(offsets), config.batch_size)]
    segmentation_model = engine.segmentation()
    waveform = torch.from_numpy(audio).to(engine.device)
    parts = []
    for part in threaded_map(lambda batch: segment_windows(segmentation_model, waveform, batch), batches):
        parts.append(part)
        tick("segmentation", len(parts) / len(batches))
    activity = np.concatenate([p.activity for p in parts])
    certainty = np.concatenate([p.certainty for p in parts])
    hook("segmentation", activity)
    embedding_model = engine.embedding()
    speech = _speech_frames(offsets, activity, -(-len(audio) // FEATURE_STEP_SAMPLES))
    features = backbone_features(
        engine.backbone(),
        audio,
        speech,
        config.embedding_chunk,
        config.embedding_context,
        lambda done: tick("embeddings", done),
    )
    batched = list(zip(batches, np.split(activity, np.cumsum([len(b) for b in batches])[:-1]), strict=True))
    pooled = [pool_embeddings(embedding_model, features, starts, part) for starts, part in batched]
    segments = None
    if config.resegmentation:
        segments = _join_segments(
            [segment_embeddings(embedding_model, features, starts, part, config) for starts, part in batched]
        )
    embeddings, clean = np.concatenate([p[0] for p in pooled]), np.concatenate([p[1] for p in pooled])
    tick("embeddings", 1.0)  # the page's last chunks may hold no speech, and so report nothing
    hook("embeddings", embeddings)
    return WindowAnalysis(activity, certainty, embeddings, clean, len(audio), segments)


def analyse_windows(
    blocks: Iterable[np.ndarray],
    config: PipelineConfig,
    total_samples: int | None = None,
    hook: Hook | None = None,
    engine: Engine | None = None,
) -> WindowAnalysis:
    """Read the audio once and segment and embed every window of it, metering its bandwidth on the way.

    `hook` (hooks.py) hears "decode" at each block read, "segmentation" and "embeddings" as
    they go (samples of the `total_samples` done) and at the end of each page. `engine`: the
    Python API's where not given. One loop, kept whole: the read buffer and the page bounds it
    keeps are what every step of a page works from.
    """
    engine = engine or python_engine()
    hook = fan_out(hook)
    step, page_windows = config.step_samples, PAGE_WINDOWS
    spectrum = SpectrumMeter()
    reader = iter(spectrum.metered(blocks))
    buffer, buffer_start, num_samples, finished = np.zeros(0, dtype=np.float32), 0, 0, False
    next_window = 0
    pages: dict[str, list[np.ndarray]] = {name: [] for name in ("activity", "certainty", "embeddings", "clean_seconds")}
    segment_pages: list[SegmentEmbeddings] = []
    while True:
        page_start = next_window * step
        needed = page_start + (page_windows - 1) * step + WINDOW_SAMPLES - buffer_start
        pending = [buffer]
        while sum(len(p) for p in pending) < needed and not finished:
            block = next(reader, None)
            hook("decode", block)
            if block is None:
                finished = True
            else:
                pending.append(block)
                num_samples += len(block)
        buffer = np.concatenate(pending)
        if finished:
            count = min(page_windows, window_count(num_samples, config.step_frames) - next_window)
        else:
            count = page_windows
        if count <= 0:
            break
        offsets = [i * step for i in range(count)]
        page = buffer[page_start - buffer_start : page_start - buffer_start + offsets[-1] + WINDOW_SAMPLES]
        page = np.pad(page, (0, offsets[-1] + WINDOW_SAMPLES - len(page)))
        page_end = (next_window + count) * step

        def tick(stage: str, done: float, page_start: int = page_start, page_end: int = page_end) -> None:
            if total_samples:
                position = round(page_start + done * (page_end - page_start))
                hook(stage, completed=min(position, total_samples), total=total_samples)

        analysed = _analyse_page(page, offsets, config, engine, hook, tick)
        for name, parts in pages.items():
            parts.append(getattr(analysed, name))
        if analysed.segments is not None:
            segment_pages.append(analysed.segments)
        next_window += count
        buffer = buffer[next_window * step - buffer_start :]
        buffer_start = next_window * step
    if num_samples == 0:
        raise ZeroLengthAudioError("the audio has no samples")
    for stage in ("segmentation", "embeddings"):
        hook(stage, completed=num_samples, total=num_samples)
    segments = _join_segments(segment_pages) if segment_pages else None
    return WindowAnalysis(
        **{name: _join(parts) for name, parts in pages.items()},
        num_samples=num_samples,
        segments=segments,
        bandwidth=spectrum.bandwidth(),
    )


def find_speakers(
    analysis: WindowAnalysis, bounds: SpeakerBounds, config: PipelineConfig
) -> tuple[np.ndarray, Clustering]:
    """Clustering (cut for the audio's bandwidth), then resegmentation where the config asks for it:
    the activity and clustering that `reconstruct` takes (6 local slots per window after
    resegmentation, else 3)."""
    config = config.for_bandwidth(analysis.bandwidth)
    clustering = cluster_embeddings(analysis.embeddings, analysis.clean_seconds, bounds, config)
    if not config.resegmentation:
        return analysis.activity, clustering
    return resegment(
        analysis.activity, analysis.embeddings, analysis.clean_seconds, analysis.segments, clustering, config
    )


def get_config(model: str) -> PipelineConfig:
    try:
        return CONFIGS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(CONFIGS)}") from None


def diarize(
    audio: str | os.PathLike | np.ndarray | torch.Tensor,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    model: str = DEFAULT_MODEL,
    *,
    sample_rate: int | None = None,
    transcription: bool = False,
    asr_model: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    hook: Hook | None = None,
    engine: Engine | None = None,
) -> DiarizationResult:
    """Who spoke when in `audio`: a path to anything ffmpeg reads, or a waveform.

    A file's channels are averaged and its rate converted. A waveform (NumPy array or torch
    tensor) needs its `sample_rate` in Hz, and is (samples,), (channels, samples) or (samples,
    channels), the channel axis being the shorter one (at most 64 channels, averaged); float
    samples are full scale at ±1, integer ones are PCM. `num_speakers` forces the count;
    `min_speakers` / `max_speakers` bound it. `transcription` (a file only) also runs speech
    recognition with `asr_model` (default: whisper-base; one not installed falls back to it with a
    warning) and gives the result a `transcript` of words and turns with their speakers.
    `threads`: CPU threads for this call (default: PyTorch's count). `progress` is called with 0..1
    as the work is done; `hook` hears each step (`diarist.hooks`: load, decode, segmentation,
    embeddings, clustering, reconstruction, transcription). `engine` holds the models (default: one
    for the Python API, made at the first call). Raises ``AudioError`` subclasses for unusable
    files, ``ValueError`` for bad arguments or waveforms and ``ModelNotInstalledError`` when
    weights are missing.
    """
    config = get_config(model)
    bounds = SpeakerBounds.from_request(num_speakers, min_speakers, max_speakers)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    is_file = isinstance(audio, (str, os.PathLike))
    if transcription and not is_file:
        raise ValueError("transcription needs a file: pass its path, not a waveform")
    if sample_rate is not None and is_file:
        raise ValueError("sample_rate is for waveforms only: a file's own rate is read from it")
    engine = engine or python_engine()
    hook = fan_out(hook, Fraction(progress) if progress is not None else None)

    def run(listener: Hook | None) -> DiarizationResult:
        return _diarize(audio, bounds, config, sample_rate, listener, engine)

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if not transcription:
            return run(hook)
        from diarist.transcription import diarize_and_transcribe

        return diarize_and_transcribe(engine, Path(audio), run, asr_model, None, hook)[0]
    finally:
        torch.set_num_threads(previous)


def _diarize(
    audio: str | os.PathLike | np.ndarray | torch.Tensor,
    bounds: SpeakerBounds,
    config: PipelineConfig,
    sample_rate: int | None,
    hook: Hook | None,
    engine: Engine,
) -> DiarizationResult:
    """`diarize` once its arguments are checked: the pipeline's steps, on `engine`."""
    if isinstance(audio, (str, os.PathLike)):
        duration = duration_seconds(audio)
        blocks: Iterable[np.ndarray] = stream_audio(audio)
        total = int(duration * SAMPLE_RATE) if duration else None
    else:
        waveform = as_mono_16k(audio, sample_rate)
        blocks, total = [waveform] if len(waveform) else [], len(waveform)
    times = StageTimes()
    hook = fan_out(times, hook)
    engine.load()
    hook("load", engine)
    # The waveform overview rides on the same decode: only files get one (a waveform's caller has the samples).
    meter = PeaksMeter() if isinstance(audio, (str, os.PathLike)) else None
    if meter is not None:
        blocks = meter.metered(blocks)
    with torch.inference_mode():
        analysis = analyse_windows(blocks, config, total, hook, engine)
    activity, clustering = find_speakers(analysis, bounds, config)
    # Each speaker's voice, for identification. The first three local slots are the window
    # analysis's own, after resegmentation too (it adds the split-off parts after them).
    centroids = speaker_centroids(
        analysis.embeddings, analysis.clean_seconds, clustering.assignment[:, :3], clustering.num_speakers
    )
    # The segment embeddings outlive resegmentation: identification looks for two voices in one speaker.
    middles = None if analysis.segments is None else segment_middles(analysis.segments, config)
    segment_vectors = None if analysis.segments is None else analysis.segments.vectors
    sources = None if analysis.segments is None else segment_sources(analysis.segments)
    hook("clustering", clustering)
    # Reconstruction needs nothing more of the segment embeddings (their vectors are kept above), nor the
    # memory freed so far.
    analysis.segments = None
    release_freed_memory()
    result = reconstruct(activity, analysis.certainty, clustering, analysis.num_samples, bounds, config, centroids)
    if middles is not None:
        result.voice_segments = speaker_segments(result, middles, segment_vectors, config.resegmentation_hop, sources)
    hook("reconstruction", result)
    if result.speakers:  # without speech there are no voices to confuse
        result.warnings += bandwidth_warnings(analysis.bandwidth)
    result.timings = times.seconds
    result.peaks = None if meter is None else meter.peaks()
    return result
