"""Speaker-attributed transcription: speech recognition next to diarization, words given speakers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diarist.result import DiarizationResult
from diarist.transcription.asr import Transcript, load_recognizer, transcribe
from diarist.transcription.attribution import Utterance, attribute_words, join_turns


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
    audio: Path,
    diarize: Callable[[Callable[[float], None]], DiarizationResult],
    asr_model: str | None,
    models_dir: Path,
    progress: Callable[[float], None] | None = None,
) -> tuple[DiarizationResult, AttributedTranscript]:
    """Run `diarize(progress)` here and speech recognition in a second thread at the same time.

    Both release the GIL in their native code, so the recognizer does not wait for the
    diarization. They share the caller's torch thread count (half each, rounded in favour of
    diarization) rather than each taking it all, which would run more threads than cores.
    `progress` hears the mean of the two; an exception it raises (a canceled job) stops both.
    """
    import torch

    threads = torch.get_num_threads()
    recognition_threads = max(1, threads // 2)
    recognizer, warning = load_recognizer(asr_model, models_dir, recognition_threads)
    done = {"diarization": 0.0, "transcription": 0.0}
    lock, stop = threading.Lock(), threading.Event()

    def report(part: str) -> Callable[[float], None]:
        def update(fraction: float) -> None:
            with lock:
                done[part] = fraction
                overall = sum(done.values()) / 2
            if progress is not None:
                progress(overall)

        return update

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr") as pool:
        recognition = pool.submit(transcribe, audio, recognizer, report("transcription"), stop)
        torch.set_num_threads(max(1, threads - recognition_threads))
        try:
            result = diarize(report("diarization"))
        except BaseException:
            stop.set()
            raise
        finally:
            torch.set_num_threads(threads)
        transcript = recognition.result()
    if warning:
        transcript.warnings.append(warning)
    words = attribute_words(transcript.words, result.exclusive_turns)
    return result, AttributedTranscript(words, join_turns(words), transcript)
