"""The CAM++ backbone in ONNX Runtime: exported at first use, cached, checked against PyTorch."""

import pytest
import torch

from diarist import models
from diarist.audio import load_audio
from diarist.pipeline.embedding import fbank

from .conftest import SAMPLE


def test_onnx_backbone_matches_torch_on_the_sample():
    model = models.load_embedding()
    backbone = models.load_backbone(model)
    assert isinstance(backbone, models.OnnxBackbone)
    features = fbank(load_audio(SAMPLE))
    expected = models.torch_backbone(model)(features)
    found = backbone(features)
    assert found.shape == expected.shape == (512, -(-len(features) // 2))
    assert (found - expected).abs().max() <= models.BACKBONE_TOLERANCE
    assert expected.abs().max() > 100 * models.BACKBONE_TOLERANCE  # the tolerance is small next to the values


class WrongBackbone(torch.nn.Module):
    """Right input and output shapes, wrong features."""

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return fbank[:, ::2, :1].transpose(1, 2).repeat(1, 512, 1)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIARIST_CACHE_DIR", str(tmp_path))
    return models.onnx_backbone_path()


@pytest.mark.slow
def test_export_is_cached_and_checked_again_by_every_process(fresh_cache):
    path = fresh_cache
    model = models.load_embedding()
    assert not path.exists()
    assert isinstance(models.load_backbone(model), models.OnnxBackbone)
    exported = path.stat().st_mtime_ns
    # A new process (each load is one): the cached file is used as it is.
    assert isinstance(models.load_backbone(model), models.OnnxBackbone)
    assert path.stat().st_mtime_ns == exported

    # A file that loads but computes something else is exported again.
    torch.onnx.export(
        WrongBackbone(),
        (torch.zeros(1, 100, 80),),
        str(path),
        dynamo=False,
        input_names=["fbank"],
        dynamic_axes={"fbank": {1: "frames"}},
    )
    assert not models.backbone_agrees(models.OnnxBackbone(path), model)
    assert isinstance(models.load_backbone(model), models.OnnxBackbone)
    assert models.backbone_agrees(models.OnnxBackbone(path), model)

    # So is a file that does not load at all.
    path.write_bytes(b"not an onnx model")
    assert isinstance(models.load_backbone(model), models.OnnxBackbone)
    assert models.backbone_agrees(models.OnnxBackbone(path), model)
