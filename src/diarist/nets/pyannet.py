"""PyanNet, the architecture of pyannote's segmentation-3.0 checkpoint.

SincNet front end (learned band-pass filters on the raw waveform), four bidirectional LSTM
layers and two linear layers, ending in a log-softmax over 7 *powerset* classes:
``[none, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}]``. Attribute names mirror the checkpoint's
state dict so that it loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 160_000  # the model was trained on 10 s chunks
FRAME_STEP_SAMPLES = 270  # 16.875 ms between output frames
RECEPTIVE_FIELD_SAMPLES = 991  # 61.9 ms of audio behind each output frame
FRAMES_PER_WINDOW = 589
# Local speakers active in each powerset class, in the model's class order.
POWERSET_CLASSES = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
LOCAL_SPEAKERS = 3


class SincFilterbank(nn.Module):
    """Band-pass filters parametrised by their low cut-off and bandwidth (Ravanelli & Bengio)."""

    def __init__(self, n_filters: int = 80, kernel_size: int = 251, stride: int = 10) -> None:
        super().__init__()
        half = kernel_size // 2
        self.stride = stride
        self.min_low_hz = 50.0
        self.min_band_hz = 50.0
        self.low_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.register_buffer("window_", torch.zeros(half))
        self.register_buffer("n_", torch.zeros(1, half))

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = (low + self.min_band_hz + self.band_hz_.abs()).clamp(self.min_low_hz, SAMPLE_RATE / 2)
        band = high - low
        phase_low, phase_high = low @ self.n_, high @ self.n_
        # Each band gives a cosine (even) and a sine (odd) filter, built from their left halves.
        cos_left = (phase_high.sin() - phase_low.sin()) / (self.n_ / 2) * self.window_
        sin_left = (phase_low.cos() - phase_high.cos()) / (self.n_ / 2) * self.window_
        cos = torch.cat([cos_left, 2 * band, cos_left.flip(1)], dim=1)
        sin = torch.cat([sin_left, torch.zeros_like(band), -sin_left.flip(1)], dim=1)
        return (torch.cat([cos / (2 * band), sin / (2 * band)], dim=0)).unsqueeze(1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveforms, self.filters(), stride=self.stride)


class SincEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.filterbank = SincFilterbank()

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.filterbank(waveforms)


class SincNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([SincEncoder(), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList(
            [nn.InstanceNorm1d(80, affine=True), nn.InstanceNorm1d(60, affine=True), nn.InstanceNorm1d(60, affine=True)]
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.wav_norm1d(waveforms)
        for i, (conv, pool, norm) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d, strict=True)):
            x = conv(x)
            if i == 0:
                x = x.abs()
            x = F.leaky_relu(norm(pool(x)))
        return x


class PyanNet(nn.Module):
    """Maps (batch, 1, 160000) waveforms to (batch, 589, 7) powerset log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.sincnet = SincNet()
        self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True)
        self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
        self.classifier = nn.Linear(128, len(POWERSET_CLASSES))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.sincnet(waveforms).transpose(1, 2))
        for linear in self.linear:
            x = F.leaky_relu(linear(x))
        return F.log_softmax(self.classifier(x), dim=-1)


def powerset_to_speakers() -> torch.Tensor:
    """(7, 3) matrix that turns one-hot powerset classes into per-local-speaker activity."""
    mapping = torch.zeros(len(POWERSET_CLASSES), LOCAL_SPEAKERS)
    for k, speakers in enumerate(POWERSET_CLASSES):
        mapping[k, list(speakers)] = 1.0
    return mapping
