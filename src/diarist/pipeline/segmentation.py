"""Step 1: local speaker activity in sliding 10 s windows (powerset segmentation).

Consecutive windows overlap by most of their length, so the costliest layer of the model, the
sinc filterbank over the raw waveform, is run once over the audio shared by a batch of windows
and sliced per window. That is exact: the model's per-window waveform normalisation is affine,
so it is applied after the (linear) filterbank instead of before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from diarist.nets.pyannet import (
    FRAME_STEP_SAMPLES,
    FRAMES_PER_WINDOW,
    RECEPTIVE_FIELD_SAMPLES,
    WINDOW_SAMPLES,
    PyanNet,
    powerset_to_speakers,
)

FILTER_STRIDE = 10


def frame_count(num_samples: int) -> int:
    """Frames of the global grid that describe `num_samples` of audio: those whose centre lies
    inside it, and at least one for any audio at all."""
    if num_samples <= 0:
        return 0
    # Frame f is centred on sample f * FRAME_STEP_SAMPLES + RECEPTIVE_FIELD_SAMPLES / 2 (in halves: exact).
    return max(1, -(-(2 * num_samples - RECEPTIVE_FIELD_SAMPLES) // (2 * FRAME_STEP_SAMPLES)))


def window_count(num_samples: int, step_frames: int) -> int:
    """How many windows, every `step_frames` frames, it takes for their frames to cover all
    `frame_count(num_samples)` frames.

    The centre of a window's last (589th) frame lies 47 ms before the end of its 10 s, so audio
    that ends in a window's last 30 ms has one more frame, and needs one more (mostly
    zero-padded) window: counting windows by samples alone left that frame without any.
    """
    frames = frame_count(num_samples)
    if frames == 0:
        return 0
    return 1 + max(0, -(-(frames - FRAMES_PER_WINDOW) // step_frames))


@dataclass
class WindowSegmentation:
    """Segmentation of a batch of windows, at the model's 16.875 ms frame rate."""

    activity: np.ndarray  # (windows, 589, 3) bool: local speaker k speaks in frame t
    certainty: np.ndarray  # (windows, 589) float32: probability of the decoded powerset class


def segment_windows(model: PyanNet, audio: torch.Tensor, offsets: list[int]) -> WindowSegmentation:
    """Segment the windows of `audio` (1-D, zero-padded as needed, on the model's device) that start
    at `offsets`.

    Offsets are in samples and must be multiples of 30 (filterbank stride times pooling).
    """
    if any(o % (FILTER_STRIDE * 3) for o in offsets):
        raise ValueError("window offsets must be multiples of 30 samples")
    sincnet = model.sincnet
    filters = sincnet.conv1d[0].filterbank.filters()
    first, last = min(offsets), max(offsets) + WINDOW_SAMPLES
    shared = F.conv1d(audio[first:last].view(1, 1, -1), filters, stride=FILTER_STRIDE)[0]
    windows = torch.stack([audio[o : o + WINDOW_SAMPLES] for o in offsets])
    # InstanceNorm1d(1, affine=True) on each window: y = scale * x + shift, per window.
    norm = sincnet.wav_norm1d
    var, mean = torch.var_mean(windows, dim=1, unbiased=False)
    scale = norm.weight / torch.sqrt(var + norm.eps)
    shift = norm.bias - scale * mean
    filter_sums = filters.sum(dim=(1, 2))
    # |.| then max-pooling of an affine map of the shared filter outputs only needs their
    # pooled maxima and minima: max |a*v + b| over a pool is max(|a*max v + b|, |a*min v + b|).
    pool = sincnet.pool1d[0]
    highs, lows = pool(shared), -pool(-shared)
    frames = ((WINDOW_SAMPLES - filters.shape[-1]) // FILTER_STRIDE + 1) // pool.stride
    starts = [(o - first) // (FILTER_STRIDE * pool.stride) for o in offsets]
    high = torch.stack([highs[:, s : s + frames] for s in starts])
    low = torch.stack([lows[:, s : s + frames] for s in starts])
    a, b = scale[:, None, None], shift[:, None, None] * filter_sums[None, :, None]
    # In place: these (windows, 80, 5325) tensors are the largest the pipeline holds.
    x = torch.maximum(high.mul_(a).add_(b).abs_(), low.mul_(a).add_(b).abs_(), out=high)
    del low
    x = F.leaky_relu_(sincnet.norm1d[0](x))
    for conv, pool, norm1d in zip(sincnet.conv1d[1:], sincnet.pool1d[1:], sincnet.norm1d[1:], strict=True):
        x = F.leaky_relu_(norm1d(pool(conv(x))))
    x, _ = model.lstm(x.transpose(1, 2))
    for linear in model.linear:
        x = F.leaky_relu(linear(x))
    log_probs = F.log_softmax(model.classifier(x), dim=-1)
    best = log_probs.argmax(dim=-1)
    activity = powerset_to_speakers()[best.cpu()] > 0
    certainty = log_probs.max(dim=-1).values.exp().cpu()
    return WindowSegmentation(activity=activity.numpy(), certainty=certainty.numpy().astype(np.float32))
