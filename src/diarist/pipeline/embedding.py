"""Step 2: one speaker embedding per (window, local speaker).

The CAM++ backbone runs once over the audio, in long chunks with context on both sides (long
sequences cost about a third per second of what 10 s crops do), and only where the segmentation
found speech. Each (window, local speaker) then pools the backbone frames of its window with its
own activity as weights, overlapped speech left out when enough clean speech remains.
"""

from __future__ import annotations

from collections.abc import Callable

import kaldi_native_fbank as knf
import numpy as np
import torch

from diarist.nets.campplus import CAMPPlus
from diarist.nets.pyannet import FRAME_STEP_SAMPLES, FRAMES_PER_WINDOW, RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE
from diarist.pipeline.parallel import threaded_map

FEATURE_STEP_SAMPLES = 320  # one backbone frame per two 10 ms fbank frames
FEATURE_CENTER_SAMPLES = 200  # centre of the first 25 ms fbank frame
FEATURES_PER_WINDOW = 500  # 10 s / 20 ms
FEATURE_CHANNELS = 512  # of the CAM++ backbone's output
MIN_CLEAN_POOL_FRAMES = 25  # below 0.5 s of clean speech, pool the overlapped speech too


def fbank(samples: np.ndarray) -> np.ndarray:
    """Kaldi-style 80-band log-mel fbank (25 ms / 10 ms), mean-normalised over time."""
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.mel_opts.num_bins = 80
    extractor = knf.OnlineFbank(options)
    extractor.accept_waveform(SAMPLE_RATE, samples)
    extractor.input_finished()
    frames = np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])
    return frames - frames.mean(axis=0, keepdims=True)


def backbone_features(
    backbone: Callable[[np.ndarray], torch.Tensor],
    audio: np.ndarray,
    speech: np.ndarray,
    chunk: float,
    context: float,
    tick: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """(512, frames) backbone features every 20 ms over `audio`, zero where there is no speech.

    `backbone` maps a chunk's (frames, 80) fbank to its features (`Engine.backbone`);
    chunks run on several threads at once (`threaded_map`).
    `speech` flags each 20 ms frame that some window found speech in; chunks without any are
    skipped. Chunk and context lengths are rounded to whole frames so that every chunk lands on
    the same frame grid. `tick` is told the fraction done after each chunk.
    """
    step = FEATURE_STEP_SAMPLES
    total = -(-len(audio) // step)
    features = torch.zeros(FEATURE_CHANNELS, total)
    chunk_frames, context_frames = round(chunk * SAMPLE_RATE / step), round(context * SAMPLE_RATE / step)
    spans = []  # (first, last, first frame of the chunk's audio with its context)
    for first in range(0, total, chunk_frames):
        last = min(first + chunk_frames, total)
        begin = max(first - context_frames, 0)
        # Chunks without speech are skipped, and so is a tail shorter than one fbank frame.
        if speech[first:last].any() and len(audio[begin * step : (last + context_frames) * step]) >= 400:
            spans.append((first, last, begin))

    def compute(span: tuple[int, int, int]) -> torch.Tensor:
        first, last, begin = span
        samples = audio[begin * step : (last + context_frames) * step]
        return backbone(fbank(samples))[:, first - begin : last - begin]

    for (first, last, _), wanted in zip(spans, threaded_map(compute, spans), strict=True):
        features[:, first : first + wanted.shape[1]] = wanted
        if tick is not None:
            tick(last / total)
    return features


def window_features(
    features: torch.Tensor, offsets: list[int], activity: np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    """The backbone frames of each window and its activity resampled onto them.

    `offsets` are window starts in samples from the start of `features`; `activity` is the
    (windows, 589, 3) segmentation. Returns (windows, 512, 500) features and (windows, 500, 3)
    activity, each 20 ms frame taking the segmentation frame nearest its centre.
    """
    starts = -(-(np.asarray(offsets) - FEATURE_CENTER_SAMPLES) // FEATURE_STEP_SAMPLES)
    frames = starts[:, None] + np.arange(FEATURES_PER_WINDOW)  # (windows, 500) feature frames
    centres = frames * FEATURE_STEP_SAMPLES + FEATURE_CENTER_SAMPLES - np.asarray(offsets)[:, None]
    nearest = np.rint((centres - RECEPTIVE_FIELD_SAMPLES / 2) / FRAME_STEP_SAMPLES).astype(int)
    nearest = nearest.clip(0, FRAMES_PER_WINDOW - 1)
    rows = np.arange(len(offsets))[:, None]
    frames = frames.clip(0, features.shape[1] - 1)
    return features[:, torch.from_numpy(frames)].permute(1, 0, 2), activity[rows, nearest]


def pool_embeddings(
    model: CAMPPlus, features: torch.Tensor, offsets: list[int], activity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Embed each local speaker of each window from the backbone frames of that window.

    `offsets` are window starts in samples from the start of `features`; `activity` is the
    (windows, 589, 3) segmentation. Returns (windows, 3, 192) embeddings (NaN for silent local
    speakers) and (windows, 3) seconds of speech where each speaks alone.
    """
    gathered, active = window_features(features, offsets, activity)
    clean = active & (active.sum(axis=-1, keepdims=True) == 1)
    clean_frames = clean.sum(axis=1)
    # Pool clean speech only when there is enough of it; else all of the speaker's speech.
    weights = np.where((clean_frames >= MIN_CLEAN_POOL_FRAMES)[:, None, :], clean, active).astype(np.float32)
    device = next(model.parameters()).device
    pooling = torch.from_numpy(weights).transpose(1, 2).to(device)
    embeddings = model.embed(gathered.to(device), pooling).cpu().numpy()
    embeddings[~active.any(axis=1)] = np.nan
    return embeddings, clean_frames * FEATURE_STEP_SAMPLES / SAMPLE_RATE
