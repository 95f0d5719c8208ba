"""Speech recognition with word timestamps, over long audio in chunks cut at quiet moments.

Backends: faster-whisper (CTranslate2) for the packaged Whisper models and an operator's
large-v3-turbo; onnx-asr for an operator's Parakeet TDT. Nothing is downloaded: a named model
that is not installed falls back to the packaged default, and the transcript says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from diarist.audio import duration_seconds, stream_audio
from diarist.hooks import TRANSCRIPTION, Hook
from diarist.settings import usable_cores
from diarist.vocabulary import ASR_MODELS, DEFAULT_ASR_MODEL, PACKAGED_ASR_MODELS

log = logging.getLogger("diarist.transcription")

SAMPLE_RATE = 16000

CHUNK_SECONDS = 120.0  # audio handed to the recognizer at once: memory stays flat on long files
CUT_SEARCH_SECONDS = 10.0  # a chunk ends at the quietest 100 ms within its last seconds
BEAM_SIZE = 5


@dataclass(frozen=True)
class Word:
    """One recognized word; `text` keeps the recognizer's spacing and punctuation (" Hello,")."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    words: list[Word]
    model: str  # the model that actually ran
    language: str | None = None
    warnings: list[str] = field(default_factory=list)


class Recognizer(Protocol):
    name: str

    def recognize(self, audio: np.ndarray, offset: float, language: str | None) -> tuple[list[Word], str | None]:
        """Words in 16 kHz mono `audio`, with times shifted by `offset` s, and the language heard."""
        ...


class WhisperRecognizer:
    """faster-whisper, int8 on CPU (float16 on cuda), word timestamps, its Silero VAD skipping silence."""

    def __init__(self, name: str, directory: Path, threads: int, device: str = "cpu"):
        from faster_whisper import WhisperModel

        # Its INFO lines ("Processing audio with duration ...", per chunk) would flood a server's log.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        self.name = name
        compute_type = "float16" if device == "cuda" else "int8"
        self.model = WhisperModel(str(directory), device=device, compute_type=compute_type, cpu_threads=threads)

    def recognize(self, audio: np.ndarray, offset: float, language: str | None) -> tuple[list[Word], str | None]:
        segments, info = self.model.transcribe(
            audio, language=language, beam_size=BEAM_SIZE, word_timestamps=True, vad_filter=True
        )
        words = [Word(offset + w.start, offset + w.end, w.word) for segment in segments for w in segment.words or []]
        return words, info.language


class ParakeetRecognizer:
    """NVIDIA Parakeet TDT through onnx-asr, from the ONNX export in a local directory."""

    FRAME_SECONDS = 0.08  # one encoder step: the length given to a word's last token

    def __init__(self, name: str, directory: Path, threads: int, device: str = "cpu"):
        import onnx_asr
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # The export comes in float32 and int8 files; take whichever the operator installed.
        quantization = None if (directory / "encoder-model.onnx").is_file() else "int8"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        model = onnx_asr.load_model(
            "nemo-parakeet-tdt-0.6b-v3", directory, quantization=quantization, sess_options=options, providers=providers
        )
        self.name, self.model = name, model.with_timestamps()

    def recognize(self, audio: np.ndarray, offset: float, language: str | None) -> tuple[list[Word], str | None]:
        result = self.model.recognize(audio, sample_rate=SAMPLE_RATE)
        return tokens_to_words(result.tokens or [], result.timestamps or [], offset, self.FRAME_SECONDS), None


def tokens_to_words(tokens: list[str], starts: list[float], offset: float, last_length: float) -> list[Word]:
    """Join subword tokens into words: a token that starts with a space or "▁" begins a new word."""
    words: list[list] = []
    for i, (token, start) in enumerate(zip(tokens, starts, strict=True)):
        end = starts[i + 1] if i + 1 < len(starts) else start + last_length
        piece = token.replace("▁", " ")
        if not words or piece.startswith(" "):
            words.append([offset + start, offset + end, piece if piece.startswith(" ") else " " + piece])
        else:
            words[-1][1], words[-1][2] = offset + end, words[-1][2] + piece
    return [Word(start, end, text) for start, end, text in words if text.strip()]


def operator_model_installed(name: str, directory: Path) -> bool:
    if name == "faster-whisper-large-v3-turbo":
        return (directory / "model.bin").is_file()
    return (directory / "vocab.txt").is_file() and any(directory.glob("encoder-model*.onnx"))


def _open(name: str, directory: Path | None, threads: int, device: str) -> Recognizer:
    if name in PACKAGED_ASR_MODELS:
        from diarist.models import whisper_dir  # loads torch: only when a model is really needed

        return WhisperRecognizer(name, whisper_dir(name), threads, device)
    assert directory is not None
    if name == "parakeet-tdt-0.6b-v3":
        return ParakeetRecognizer(name, directory, threads, device)
    return WhisperRecognizer(name, directory, threads, device)


def load_recognizer(
    name: str | None, models_dir: Path | None, threads: int | None = None, device: str = "cpu"
) -> tuple[Recognizer, str | None]:
    """The recognizer for a model name (None: the default), and a warning when it had to fall back.

    `models_dir` holds the operator-installed models (None: none are). Loads the model each time:
    `Engine.recognizer` keeps what it loaded.
    """
    name = name or DEFAULT_ASR_MODEL
    threads = threads or max(1, usable_cores() // 2)
    if name not in ASR_MODELS:
        raise ValueError(f"unknown transcription model {name!r}; known: {', '.join(ASR_MODELS)}")
    if name in PACKAGED_ASR_MODELS:
        return _open(name, None, threads, device), None
    directory = None if models_dir is None else models_dir / name
    if directory is not None and operator_model_installed(name, directory):
        return _open(name, directory, threads, device), None
    # The folder is the server's business: it goes to the log, the user hears which model ran.
    log.warning("%s is not installed in %s; transcribing with %s", name, directory, DEFAULT_ASR_MODEL)
    warning = (
        f"Transcribed with {DEFAULT_ASR_MODEL}: {name} is not installed on this server "
        "(its operator can install it: see diarist's docs/models.md)."
    )
    return _open(DEFAULT_ASR_MODEL, None, threads, device), warning


def quiet_cut(audio: np.ndarray, search: int) -> int:
    """Index of the quietest 100 ms frame start within the last `search` samples of `audio`."""
    frame = SAMPLE_RATE // 10
    tail = audio[len(audio) - search :]
    frames = len(tail) // frame
    if frames < 2:
        return len(audio)
    energy = (tail[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
    return len(audio) - search + int(np.argmin(energy[1:]) + 1) * frame


def speech_chunks(blocks: Iterable[np.ndarray]) -> Iterator[tuple[float, np.ndarray]]:
    """(start seconds, samples) of consecutive chunks of at most CHUNK_SECONDS, cut where it is quiet."""
    size, search = int(CHUNK_SECONDS * SAMPLE_RATE), int(CUT_SEARCH_SECONDS * SAMPLE_RATE)
    pending, start = np.zeros(0, dtype=np.float32), 0
    for block in blocks:
        pending = np.concatenate([pending, block])
        while len(pending) >= size:
            cut = quiet_cut(pending[:size], search)
            yield start / SAMPLE_RATE, pending[:cut]
            pending, start = pending[cut:], start + cut
    if len(pending):
        yield start / SAMPLE_RATE, pending


def transcribe(
    audio: Path,
    recognizer: Recognizer,
    hook: Hook | None = None,
    stop: threading.Event | None = None,
) -> Transcript:
    """Words of a whole file, chunk by chunk; the language is detected on the first chunk with speech.

    `hook` hears "transcription" with the samples done after each chunk, and the transcript at the end.
    """
    total = round((duration_seconds(audio) or 0.0) * SAMPLE_RATE)
    words: list[Word] = []
    language = None
    for start, samples in speech_chunks(stream_audio(audio)):
        if stop is not None and stop.is_set():
            break
        found, heard = recognizer.recognize(samples, start, language)
        words += found
        if found and language is None:
            language = heard
        if hook is not None and total:
            hook(TRANSCRIPTION, completed=min(round(start * SAMPLE_RATE) + len(samples), total), total=total)
    transcript = Transcript(words, recognizer.name, language)
    if hook is not None:
        hook(TRANSCRIPTION, transcript)
    return transcript
