"""A job output as a file (JSON, RTTM, SRT, WebVTT, text), with the names users gave its speakers.

One renderer for the command line (`diarist diarize --format`) and the API (`GET
/v1/jobs/{jobId}/export`). It works from the pyannoteAI output, which is all a server keeps of a
job; the command line also passes the transcript objects, whose words keep the recognizer's own
spacing (the output strips it).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from diarist.result import Turn, talk_time, to_rttm
from diarist.transcription.attribution import Utterance
from diarist.transcription.formats import (
    srt_text,
    talk_time_summary,
    to_srt,
    to_text,
    to_vtt,
    vtt_text,
    write_srt,
    write_vtt,
)

if TYPE_CHECKING:
    from diarist.result import DiarizationResult
    from diarist.transcription import AttributedTranscript

# format -> (file extension, Content-Type)
FORMATS: dict[str, tuple[str, str]] = {
    "json": ("json", "application/json"),
    "rttm": ("rttm", "text/plain; charset=utf-8"),
    "srt": ("srt", "application/x-subrip; charset=utf-8"),
    "vtt": ("vtt", "text/vtt; charset=utf-8"),
    "txt": ("txt", "text/plain; charset=utf-8"),
}
# The subtitle formats: from the transcript when there is one, else one cue per turn.
SUBTITLE_FORMATS = ("srt", "vtt", "txt")
TURN_LISTS = ("diarization", "exclusiveDiarization", "identification")
TRANSCRIPT_LISTS = ("wordLevelTranscription", "turnLevelTranscription")

# The web page uploads a file as media://web/<time>-<random>-<its name>: the prefix only keeps names apart.
WEB_UPLOAD_PREFIX = re.compile(r"^[0-9a-z]+-[0-9a-z]+-")
UNSAFE_IN_FILE_NAMES = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 120


def media_stem(url: str | None, fallback: str) -> str:
    """The stem of the file a job's input `url` names (media:// or http), safe in a file name and an
    RTTM field: runs of other characters than letters, digits, `.`, `_` and `-` become `_`.
    `fallback` where the URL names no file."""
    if url is None:
        return fallback
    if url.startswith("media://"):
        path = url.removeprefix("media://")
        if path.startswith("web/"):
            path = WEB_UPLOAD_PREFIX.sub("", path.removeprefix("web/"))
    else:
        path = unquote(urlsplit(url).path)
    stem = PurePosixPath(path.rsplit("/", 1)[-1]).stem
    return UNSAFE_IN_FILE_NAMES.sub("_", stem).strip("._")[-MAX_STEM:] or fallback


@dataclass(frozen=True)
class Wrapping:
    """How SRT and WebVTT cues are laid out: lines of at most `width` characters, broken between
    words, and at most `lines` of them, a longer cue being split in two. The defaults are broadcast
    subtitles' (42 characters, 2 lines); a word longer than a line keeps a line to itself."""

    width: int = 42
    lines: int = 2

    def __post_init__(self) -> None:
        if self.width < 1 or self.lines < 1:
            raise ValueError(f"subtitle lines must be at least 1 character wide and 1 per cue, got {self}")

    def _lines(self, text: str) -> list[str]:
        return textwrap.wrap(text, self.width, break_long_words=False, break_on_hyphens=False)

    def layout(self, text: str) -> str:
        """`text` broken into lines of at most `width` characters."""
        return "\n".join(self._lines(text))

    def fits(self, text: str) -> bool:
        """Whether `text` takes at most `lines` lines."""
        return len(self._lines(text)) <= self.lines


BROADCAST = Wrapping()  # the default layout: 42 characters, 2 lines


def default_names(output: dict[str, Any] | None) -> dict[str, str]:
    """Names an output's speakers have before any user renames them: an identify output's matched labels."""
    voiceprints = (output or {}).get("voiceprints")
    if not isinstance(voiceprints, list):  # a voiceprint job's output has one `voiceprint` string instead
        return {}
    return {item["speaker"]: item["match"] for item in voiceprints if item.get("match")}


def output_speakers(output: dict[str, Any]) -> set[str]:
    """The speaker ids (SPEAKER_xx) of an output: those a name can be given to."""
    speakers = {turn["speaker"] for turn in output.get("diarization", [])}
    speakers |= {turn["speaker"] for turn in output.get("exclusiveDiarization", [])}
    speakers |= {item["speaker"] for item in output.get("voiceprints", [])}
    # A transcript may name a speaker the diarization never found (words heard in silence).
    for name in TRANSCRIPT_LISTS:
        speakers |= {item["speaker"] for item in output.get(name, [])}
    return speakers


def apply_names(output: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`output` with every speaker field renamed by `names` (speaker ids without a name keep theirs).

    Turns, identification segments, transcripts, talk times, per-turn confidence keys and the
    identify `voiceprints` list; an identification segment's `diarizationSpeaker` stays the id it links to.
    """
    if not names:
        return output

    def rename(item: dict[str, Any], key: str = "speaker") -> dict[str, Any]:
        item = {**item, "speaker": names.get(item[key], item["speaker"])}
        if isinstance(item.get("confidence"), dict) and key == "speaker":
            item["confidence"] = {names.get(s, s): score for s, score in item["confidence"].items()}
        return item

    renamed = dict(output)
    for name in ("diarization", "exclusiveDiarization", "voiceprints", "talkTime", *TRANSCRIPT_LISTS):
        if name in output:
            renamed[name] = [rename(item) for item in output[name]]
    if "identification" in output:
        renamed["identification"] = [rename(item, "diarizationSpeaker") for item in output["identification"]]
    return renamed


def _turns(items: list[dict[str, Any]]) -> list[Turn]:
    return [Turn(item["start"], item["end"], item["speaker"]) for item in items]


def _utterances(items: list[dict[str, Any]]) -> list[Utterance]:
    # The output strips each word's spacing; a space before each joins words as most languages write them.
    return [Utterance(item["start"], item["end"], " " + item["text"], item["speaker"]) for item in items]


def render(
    output: dict[str, Any],
    fmt: str,
    uri: str = "audio",
    exclusive: bool = False,
    transcript: AttributedTranscript | None = None,
    result: DiarizationResult | None = None,
    wrapping: Wrapping = BROADCAST,
) -> str:
    """`output` in `fmt` (one of FORMATS); `uri` names the recording in RTTM; `wrapping` lays out SRT and
    WebVTT cues.

    SRT, WebVTT and text come from the transcript when there is one, else from the diarization:
    one cue per exclusive turn (one speaker at a time), its text the speaker; text ends with each
    speaker's talk time. RTTM takes the
    exclusive turns when `exclusive`. The command line passes the objects the output was made of
    (`transcript`, `result`: exact times and spacing, exclusive turns even when the output left
    them out); the API has only the stored output, with names applied by `apply_names`.
    """
    if fmt == "json":
        return json.dumps(output, indent=2) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "txt":
        turns = result.turns if result is not None else _turns(output.get("diarization", []))
        return _text(output, transcript, result) + talk_time_summary(talk_time(turns))
    if fmt == "rttm":
        if result is not None:
            return result.to_rttm(uri=uri, exclusive=exclusive)
        turns = output.get("exclusiveDiarization") if exclusive else None
        return to_rttm(_turns(turns if turns is not None else output.get("diarization", [])), uri)
    if transcript is not None or "wordLevelTranscription" in output:
        words = transcript.words if transcript else _utterances(output["wordLevelTranscription"])
        if fmt == "srt":
            return to_srt(words, lambda cue: wrapping.fits(srt_text(cue)), wrapping.layout)
        return to_vtt(words, lambda cue: wrapping.fits(vtt_text(cue)), wrapping.layout)
    return (write_srt if fmt == "srt" else write_vtt)(_turn_cues(output, result), wrapping.layout)


def _text(output: dict[str, Any], transcript: AttributedTranscript | None, result: DiarizationResult | None) -> str:
    """The plain-text transcript: each turn with its words, or its speaker alone without a transcript."""
    if transcript is not None:
        return to_text(transcript.turns)
    if "turnLevelTranscription" in output:
        return to_text(_utterances(output["turnLevelTranscription"]))
    return to_text(_turn_cues(output, result))


def _turn_cues(output: dict[str, Any], result: DiarizationResult | None) -> list[Utterance]:
    """One wordless cue per exclusive turn, in time order."""
    if result is not None:
        exclusive_turns = result.exclusive_turns
    else:  # without exclusiveDiarization in the output, its turns (which may overlap)
        exclusive_turns = _turns(output.get("exclusiveDiarization", output.get("diarization", [])))
    ordered = sorted(exclusive_turns, key=lambda t: (t.start, t.end))
    return [Utterance(t.start, t.end, "", t.speaker) for t in ordered]
