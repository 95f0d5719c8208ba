"""Speaker-attributed transcription: speech recognition next to diarization, words given speakers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarist.hooks import TRANSCRIPTION, Hook, fan_out
from diarist.result import DiarizationResult
from diarist.transcription.asr import Transcript, transcribe
from diarist.transcription.attribution import Utterance, attribute_words, join_turns

if TYPE_CHECKING:
    from diarist.engine import Engine


@dataclass
class AttributedTranscript:
    words: list[Utterance]
    turns: list[Utterance]
    transcript: Transcript

    def to_dict(self) -> dict[str, Any]:
        """The two pyannoteAI output lists."""
        return {
            "wordLevelTranscription": [w.to_dict() for w in self.words],
            "turnLevelTranscription": [t.to_dict() for t in self.turns],
        }


def diarize_and_transcribe(
    engine: Engine,
    audio: Path,
    diarize: Callable[[Hook], DiarizationResult],
    asr_model: str | None,
    models_dir: Path | None,
    hook: Hook | None = None,
) -> tuple[DiarizationResult, AttributedTranscript]:
    """Run `diarize(hook)` here and speech recognition (`engine`'s recognizer) in a second thread at
    the same time.

    Both release the GIL in their native code, so the recognizer does not wait for the
    diarization. They share the caller's torch thread count (half each, rounded in favour of
    diarization) rather than each taking it all, which would run more threads than cores.
    `hook` hears the steps of both, "transcription" at 0 first (hooks.py); an exception it
    raises (a canceled job) stops both. The result carries the transcript and its warnings.
    """
    import torch

    threads = torch.get_num_threads()
    recognition_threads = max(1, threads // 2)
    recognizer, warning = engine.recognizer(asr_model, models_dir, recognition_threads)
    hook = fan_out(hook)
    hook(TRANSCRIPTION, completed=0, total=None)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr") as pool:
        recognition = pool.submit(transcribe, audio, recognizer, hook, stop)
        torch.set_num_threads(max(1, threads - recognition_threads))
        try:
            result = diarize(hook)
        except BaseException:
            stop.set()
            raise
        finally:
            torch.set_num_threads(threads)
        transcript = recognition.result()
    if warning:
        transcript.warnings.append(warning)
    words = attribute_words(transcript.words, result.exclusive_turns)
    result.transcript = AttributedTranscript(words, join_turns(words), transcript)
    result.warnings += transcript.warnings
    return result, result.transcript
