"""CAM++ speaker embedding network (3D-Speaker), split so that its costly part can be shared.

``frame_features`` runs everything up to the statistics pooling and gives one 512-dim vector per
20 ms; ``embed`` pools those with per-frame weights (one weight vector per speaker) and projects
the statistics to the 192-dim embedding. Attribute names mirror the checkpoint's state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_STEP_SECONDS = 0.02  # the TDNN layer halves the 10 ms fbank frame rate


class BatchNormReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batchnorm(x))


class ResBlock2d(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class FrequencyConvHead(nn.Module):
    """2-D convolutions over (frequency, time) that shrink 80 mel bands to 10 x 32 channels."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.layer2 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 5, stride=2, padding=2, bias=False)
        self.nonlinear = BatchNormReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class ContextAwareMasking(nn.Module):
    """Local convolution gated by the mean over the input and over 100-frame segments."""

    segment_frames = 100

    def __init__(self, channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.segment_frames
        segments = F.avg_pool1d(x, kernel_size=n, stride=n, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments.repeat_interleave(n, dim=-1)[..., : x.shape[-1]]
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * gate


class DenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = BatchNormReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, 4 * growth, 1, bias=False)
        self.nonlinear2 = BatchNormReLU(4 * growth)
        self.cam_layer = ContextAwareMasking(4 * growth, growth, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class DenseTDNNBlock(nn.Module):
    def __init__(self, num_layers: int, in_channels: int, growth: int, dilation: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"tdnnd{i + 1}", DenseTDNNLayer(in_channels + i * growth, growth, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = BatchNormReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class EmbeddingProjection(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Module()
        self.nonlinear.batchnorm = nn.BatchNorm1d(out_channels, affine=False)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.nonlinear.batchnorm(self.linear(stats.unsqueeze(-1)).squeeze(-1))


class XVector(nn.Module):
    def __init__(self, in_channels: int = 320, channels: int = 128, growth: int = 32) -> None:
        super().__init__()
        self.tdnn = TDNNLayer(in_channels, channels)
        for i, (num_layers, dilation) in enumerate(((12, 1), (24, 2), (16, 2)), start=1):
            self.add_module(f"block{i}", DenseTDNNBlock(num_layers, channels, growth, dilation))
            channels += num_layers * growth
            self.add_module(f"transit{i}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.out_nonlinear = BatchNormReLU(channels)
        self.dense = EmbeddingProjection(2 * channels, 192)
        self.channels = channels


class CAMPPlus(nn.Module):
    """Input: (batch, frames, 80) mean-normalised log-mel fbank at 10 ms. Output: 192-dim embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.head = FrequencyConvHead()
        self.xvector = XVector()

    def frame_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 80) fbank -> (batch, 512, frames / 2) features before pooling."""
        x = self.xvector.tdnn(self.head(fbank.transpose(1, 2)))
        for i in (1, 2, 3):
            x = getattr(self.xvector, f"transit{i}")(getattr(self.xvector, f"block{i}")(x))
        return self.xvector.out_nonlinear(x)

    def embed(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Pool (batch, 512, frames) features with (batch, speakers, frames) weights.

        Returns (batch, speakers, 192): one embedding per weight vector, from the weighted mean and
        standard deviation of the frames, as the network's own statistics pooling does for weight 1.
        """
        total = weights.sum(-1, keepdim=True).clamp_min(1e-6)
        mean = torch.einsum("bst,bct->bsc", weights, features) / total
        square = torch.einsum("bst,bct->bsc", weights, features * features) / total
        # Unbiased variance, as the network was trained with.
        var = (square - mean * mean).clamp_min(0) * total / (total - 1).clamp_min(1e-6)
        stats = torch.cat([mean, var.sqrt()], dim=-1)
        batch, speakers, _ = stats.shape
        return self.xvector.dense(stats.reshape(batch * speakers, -1)).reshape(batch, speakers, -1)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        features = self.frame_features(fbank)
        ones = torch.ones(features.shape[0], 1, features.shape[-1], device=features.device)
        return self.embed(features, ones)[:, 0]
