"""Voiceprints and speaker identification, on the speaker embeddings the diarization computes.

A voiceprint is the voice of the person who talks most in a short recording: the unit centroid
of their CAM++ window embeddings, as the pipeline computes it for every speaker it finds
(`DiarizationResult.embeddings`). Identification diarizes a recording, then compares each
speaker's centroid with each voiceprint. The cosine similarity, and its margin over the
recording's other speakers, become a 0-100 confidence through a logistic curve fitted on same-
and different-speaker pairs of real speech, same-recording and same-room impostors among them
(`bench/voiceprints.py`), so that 50 means "more likely the same person than not". A matched
speaker that holds a second voice (diarization sometimes merges two people) keeps the name only
where its own speech reaches the threshold (`second_voices`).

The voiceprint string is opaque to users but versioned: base64 of a magic, the format version,
the name of the voice model that made it, the vector (float16), the seconds of speech it was made
from (version 2) and a CRC-32. A voiceprint from another model, or a damaged one, is refused
instead of silently matching garbage; one of version 1 is scored by the curve it was made with.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np

from diarist.errors import DiaristError
from diarist.result import DiarizationResult, Turn, VoiceSegments
from diarist.vocabulary import name_problem

MAGIC = b"DVP"
FORMAT_VERSION = 2  # 2 records the seconds of speech; 1 is still read
# The voice model: the CAM++ weights (by the start of their sha256, models.EMBEDDING) pooled as the
# pipeline pools them. Change the suffix when the pooling changes, so old voiceprints are refused.
VOICE_MODEL = "campplus-92f29b94/window-centroid-1"
DIMENSION = 192  # the size of its embeddings: a vector of another size cannot be compared with them
MAX_SECONDS = 30.0  # the reference's longest voiceprint audio
MAX_BYTES = 100 * 1024**2  # and its largest file
MAX_VOICEPRINTS = 50
MAX_LABEL = 100
MAX_VOICEPRINT_CHARS = 20000
# The diarization's own speaker labels: a voiceprint label like them would be ambiguous in the output.
RESERVED_PREFIX = "SPEAKER_"
# Clean speech (alone, in the exclusive diarization) a voiceprint needs, and below which it warns.
MIN_SPEECH_SECONDS = 1.0
GOOD_SPEECH_SECONDS = 5.0
# Cosine similarity -> P(same speaker): 1 / (1 + exp(-(slope * cos + offset))), (slope, offset).
# Version 1 voiceprints: the balanced logistic fit of bench/voiceprints.py (issue 11) on 130 same- and
# 3,087 different-speaker pairs from different recordings only: 50 at cosine 0.366. It said "likely
# the same" for people who only share a call or a room (issue 21).
CALIBRATION_1 = (13.08, -4.78)
# Version 2 voiceprints: P(same) = 1 / (1 + exp(-(slope * cos + margin slope * margin + offset))), the
# margin being over the recording's other speakers (`margins`): the fit of bench/voiceprints.py on pairs
# that include same-recording and same-room impostors, each kind of pair weighing alike, cross-validated
# by corpus (docs/benchmarks.md, issue 21).
CALIBRATION = (8.24, 4.33, -3.29)

# A matched speaker holding a second voice (`second_voices`): where in its speech, at this resolution (s),
# and the segments each of its two halves needs before they can be told apart.
PIECE_STEP = 0.1
MIN_HALF_SEGMENTS = 2
MAX_LINKAGE_SEGMENTS = 2000  # about 3 minutes of one speaker's speech
ROUNDING = 0.001  # s: the output's times are rounded to this

BASE64 = re.compile(r"[A-Za-z0-9+/]+=*")
# What decode can read at all, as a JSON Schema (ECMA-262) pattern for the OpenAPI document: whole base64
# groups, with ASCII blanks around them (str.strip() removes those, and more).
_BLANKS, _SYMBOL = r"[\t\n\v\f\r ]*", "[A-Za-z0-9+/]"
BASE64_PATTERN = f"^{_BLANKS}(?:{_SYMBOL}{{4}})*(?:{_SYMBOL}{{4}}|{_SYMBOL}{{3}}=|{_SYMBOL}{{2}}==){_BLANKS}$"
DAMAGED = "is damaged or truncated: pass the whole string that the voiceprint job answered"
_HEADER = struct.Struct("<3sBB")  # magic, format version, length of the model name
_DIM = struct.Struct("<H")
_CRC = struct.Struct("<I")
_SECONDS = struct.Struct("<f")  # version 2: the seconds of speech behind the vector


class VoiceprintError(DiaristError, ValueError):
    """A voiceprint that cannot be used, or audio that cannot make one; the message says why."""


@dataclass(frozen=True)
class Voice:
    """What a voiceprint holds: the unit embedding, and the seconds of speech it was made from."""

    vector: np.ndarray
    seconds: float | None  # None: a version-1 voiceprint, which did not record them


def encode(vector: np.ndarray, seconds: float, model: str = VOICE_MODEL) -> str:
    """The voiceprint string of a speaker embedding made from `seconds` of speech."""
    name = model.encode()
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, len(name)) + name + _DIM.pack(len(vector)) + _SECONDS.pack(seconds)
    body += np.asarray(vector, dtype="<f2").tobytes()
    return base64.b64encode(body + _CRC.pack(zlib.crc32(body))).decode()


def decode(text: str) -> Voice:
    """The voice in a voiceprint string (version 1 or 2); VoiceprintError when this server cannot use it."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        if BASE64.fullmatch(text.strip()):  # base64 letters, cut short of a whole group
            raise VoiceprintError(DAMAGED) from None
        raise VoiceprintError("is not a voiceprint: it is not base64 text") from None
    if len(data) < _HEADER.size or data[:3] != MAGIC:
        raise VoiceprintError("is not a voiceprint made by diarist")
    _, version, name_length = _HEADER.unpack_from(data)
    if version not in (1, FORMAT_VERSION):
        raise VoiceprintError(f"has format version {version}, which this server does not read (it reads 1 and 2)")
    extra = _SECONDS.size if version == FORMAT_VERSION else 0
    body, crc = data[: -_CRC.size], data[-_CRC.size :]
    if len(data) < _HEADER.size + name_length + _DIM.size + extra + _CRC.size or _CRC.unpack(crc)[0] != zlib.crc32(
        body
    ):
        raise VoiceprintError(DAMAGED)
    model = body[_HEADER.size : _HEADER.size + name_length].decode(errors="replace")
    if model != VOICE_MODEL:
        raise VoiceprintError(
            f"was made with another voice model ({model}) than this server's ({VOICE_MODEL}): "
            "make it again from its audio"
        )
    offset = _HEADER.size + name_length
    (dim,) = _DIM.unpack_from(body, offset)
    seconds = _SECONDS.unpack_from(body, offset + _DIM.size)[0] if extra else None
    vector = np.frombuffer(body, dtype="<f2", offset=offset + _DIM.size + extra).astype(np.float64)
    if len(vector) != dim:
        raise VoiceprintError(DAMAGED)
    if dim != DIMENSION:
        raise VoiceprintError(f"holds {dim} values where this server's voice model makes {DIMENSION}")
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise VoiceprintError("holds no voice (an empty vector)")
    if seconds is not None and not 0 < seconds <= 2 * MAX_SECONDS:  # the job measures at most 30 s
        raise VoiceprintError(DAMAGED)
    return Voice(vector / norm, seconds)


def label_problem(label: str) -> str | None:
    """Why `label` cannot name a voiceprint, or None when it can."""
    if not 1 <= len(label) <= MAX_LABEL:
        return f"must be 1 to {MAX_LABEL} characters long"
    if label.upper().startswith(RESERVED_PREFIX):
        return f"cannot start with {RESERVED_PREFIX} (the diarization's own speaker labels)"
    return name_problem(label)


@dataclass(frozen=True)
class Voiceprint:
    """What a voiceprint job answers."""

    voiceprint: str
    speech_seconds: float  # of the chosen speaker, alone
    duration: float  # of the audio
    warnings: list[str]

    def to_dict(self) -> dict[str, str]:
        out = {"voiceprint": self.voiceprint}
        if self.warnings:
            out["warning"] = " ".join(self.warnings)
        return out


def speech_seconds(result: DiarizationResult) -> dict[str, float]:
    """Seconds each speaker talks alone (the exclusive diarization)."""
    seconds = dict.fromkeys(result.speakers, 0.0)
    for turn in result.exclusive_turns:
        seconds[turn.speaker] += turn.end - turn.start
    return seconds


def voiceprint_of(result: DiarizationResult) -> Voiceprint:
    """The voiceprint of the person who talks most in a diarized recording.

    Warns when others talk too, or when there is little speech; VoiceprintError when there is too
    little to go on.
    """
    seconds = speech_seconds(result)
    if not seconds or max(seconds.values()) < MIN_SPEECH_SECONDS:
        heard = max(seconds.values(), default=0.0)
        raise VoiceprintError(
            f"The audio holds too little speech for a voiceprint: {heard:.1f} s of one voice, at least "
            f"{MIN_SPEECH_SECONDS:g} s needed ({GOOD_SPEECH_SECONDS:g} s or more is better)."
        )
    speaker = max(seconds, key=lambda name: seconds[name])
    warnings = list(result.warnings)
    voices = sum(talk >= MIN_SPEECH_SECONDS for talk in seconds.values())
    if voices > 1:
        warnings.append(
            f"{voices} voices were heard: the voiceprint is of the one who talks most "
            f"({seconds[speaker]:.1f} s of {sum(seconds.values()):.1f} s). Use audio of one person only."
        )
    if seconds[speaker] < GOOD_SPEECH_SECONDS:
        warnings.append(
            f"Only {seconds[speaker]:.1f} s of speech: a voiceprint from {GOOD_SPEECH_SECONDS:g} s or more "
            "matches more reliably."
        )
    return Voiceprint(encode(result.embeddings[speaker], seconds[speaker]), seconds[speaker], result.duration, warnings)


def confidence(similarity: np.ndarray | float, calibration: tuple[float, float] = CALIBRATION_1) -> np.ndarray:
    """0-100 confidence that two voices are the same person, from their cosine similarity."""
    slope, offset = calibration
    probability = 1 / (1 + np.exp(-(slope * np.asarray(similarity) + offset)))
    return np.rint(100 * probability).astype(int)


def margins(cosines: np.ndarray) -> np.ndarray:
    """Each cosine (rows: one recording's speakers; columns: voices) less the best of the other speakers'.

    The others share the speaker's channel and are someone else: a voice from the same call or room
    resembles them all, and the one it is closest to by a clear margin is the likely match.
    """
    out = np.empty_like(cosines)
    for row in range(len(cosines)):
        others = np.delete(cosines, row, axis=0)
        # Alone in its recording, a speaker has no one to stand out from: no evidence either way.
        out[row] = cosines[row] - others.max(axis=0) if len(others) else 0.0
    return out


def confidences(
    speakers: np.ndarray, voices: list[Voice], calibration: tuple[float, float, float] = CALIBRATION
) -> np.ndarray:
    """0-100 confidence of each speaker (rows: the unit embeddings of one recording's speakers) for each voice.

    Version-2 voices are scored by their cosine and its margin over the recording's other speakers
    (`margins`), weighed by `calibration`; version-1 ones by the cosine calibration they were made
    with (`CALIBRATION_1`).
    """
    cosines = speakers @ np.stack([voice.vector for voice in voices]).T
    scores = confidence(cosines)
    known = np.array([voice.seconds is not None for voice in voices])
    if known.any():
        slope, margin_slope, offset = calibration
        logit = slope * cosines[:, known] + margin_slope * margins(cosines[:, known]) + offset
        scores[:, known] = np.rint(100 / (1 + np.exp(-logit))).astype(int)
    return scores


@dataclass(frozen=True)
class Matching:
    """How diarization speakers are matched with voiceprints (the request's `matching`)."""

    exclusive: bool = True  # at most one speaker per voiceprint
    threshold: float = 0.0  # no match below this confidence


def assign(scores: np.ndarray, matching: Matching) -> list[int | None]:
    """The voice (column) each speaker (row of 0-100 confidences) is matched with, or None.

    Exclusive matching assigns voices to speakers so that the confidences add up to the most
    (Hungarian assignment) among the pairs at or above the threshold; otherwise each speaker takes
    its best voice at or above it.
    """
    # Here, not at the top: scipy.optimize takes half a second to import, and the command line
    # reads this module's limits for its help.
    from scipy.optimize import linear_sum_assignment

    allowed = scores >= matching.threshold
    matches: list[int | None] = [None] * len(scores)
    if matching.exclusive:
        # Pairs below the threshold cost more than any allowed set of pairs gains: never chosen.
        cost = np.where(allowed, -scores, 100 * (len(scores) + 1))
        for row, column in zip(*linear_sum_assignment(cost), strict=True):
            if allowed[row, column]:
                matches[row] = int(column)
    else:
        for row in range(len(scores)):
            if allowed[row].any():
                matches[row] = int(np.argmax(np.where(allowed[row], scores[row], -1)))
    return matches


def match_speakers(
    speakers: dict[str, np.ndarray], voices: dict[str, Voice], matching: Matching
) -> tuple[dict[str, str | None], dict[str, dict[str, int]]]:
    """Each speaker's matched label (or None) and its confidence for every label (`confidences`, `assign`)."""
    names, labels = list(speakers), list(voices)
    if names and labels:
        scores = confidences(np.stack([speakers[n] for n in names]), [voices[v] for v in labels])
    else:
        scores = np.zeros((len(names), len(labels)), dtype=int)
    matches = {
        name: None if column is None else labels[column]
        for name, column in zip(names, assign(scores, matching), strict=True)
    }
    by_speaker = {
        name: {label: int(scores[row, col]) for col, label in enumerate(labels)} for row, name in enumerate(names)
    }
    return matches, by_speaker


@dataclass(frozen=True)
class SecondVoice:
    """The parts of a matched speaker's speech that do not take its match, as frames of `PIECE_STEP` s
    from the start of the audio: `frames`, another voice than its match, named `match` (the voiceprint
    that part matches by itself; None: none), and `talked_over`, its turns that other speakers talk
    over from start to end (no name: the speaker is never heard alone there)."""

    frames: np.ndarray
    match: str | None
    talked_over: np.ndarray


def _halves(segments: VoiceSegments, label: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The speaker's segment embeddings cut in two (Ward linkage): which half each is in, and the
    halves' unit centroids; None when it has too few segments for two halves."""
    from scipy.cluster.hierarchy import fcluster, linkage  # as in `assign`: slow to import

    vectors = segments.vectors[segments.labels == label].astype(np.float64)
    if len(vectors) < 2 * MIN_HALF_SEGMENTS:
        return None
    # The linkage costs memory in the square of its input: a long speaker's segments are sampled
    # evenly for it, and all of them then go to the nearer half.
    sample = np.linspace(0, len(vectors) - 1, min(len(vectors), MAX_LINKAGE_SEGMENTS)).astype(int)
    halves = fcluster(linkage(vectors[sample], method="ward"), 2, criterion="maxclust") - 1
    if len(sample) < len(vectors):
        centroids = np.stack([vectors[sample][halves == half].mean(axis=0) for half in (0, 1)])
        halves = np.argmax(vectors @ centroids.T / np.linalg.norm(centroids, axis=1), axis=1)
    if min((halves == 0).sum(), (halves == 1).sum()) < MIN_HALF_SEGMENTS:
        return None
    centroids = np.stack([vectors[halves == half].mean(axis=0) for half in (0, 1)])
    return halves, centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def _heard_as_two(segments: VoiceSegments, label: str) -> bool:
    """Whether the segmentation heard two people in the speaker: in more than half of the windows
    where it talks, its segments come from two or more of the window's local speakers.

    The segmentation tells the people of one window apart; the clustering then gives each local
    speaker a speaker. When it finds fewer speakers than there are people (one for a whole phone
    call), both people of a window go to one speaker, and its two halves are then two people even
    where the match's voice is close to both (one line, one channel). One person's segments come
    from two local speakers of a window mostly at the edges of turns: in a third of its windows
    at most on the bench, against 65 and 86 % for the two calls that came out as one speaker."""
    if segments.sources is None:  # results made before the segments recorded where they came from
        return False
    sources = segments.sources[segments.labels == label]
    windows, counts = np.unique(np.unique(sources, axis=0)[:, 0], return_counts=True)
    return 2 * int((counts > 1).sum()) > len(windows)


def _half_confidences(
    centroids: np.ndarray, others: np.ndarray, voices: list[Voice], calibration: tuple[float, float, float]
) -> np.ndarray:
    """(2 halves, voices): each half's 0-100 confidence for each version-2 voice, scored as a speaker
    is (`confidences`) among the other half and the recording's other speakers (rows of `others`)."""
    return confidences(np.concatenate([centroids, others]), voices, calibration)[:2]


def _covered(starts: np.ndarray, ends: np.ndarray, frames: int) -> np.ndarray:
    """How many of the spans cover the middle of each `PIECE_STEP` frame."""
    first = np.clip(np.ceil(starts / PIECE_STEP - 0.5), 0, frames).astype(int)
    last = np.clip(np.ceil(ends / PIECE_STEP - 0.5), 0, frames).astype(int)
    count = np.zeros(frames + 1)
    np.add.at(count, first, 1)
    np.add.at(count, last, -1)
    return np.cumsum(count)[:frames]


def _talked_over(result: DiarizationResult, label: str, frames: int) -> np.ndarray:
    """The `PIECE_STEP` frames of the speaker's turns that other speakers' turns cover from start to end.

    The speaker's voice (its embedding, its segments) is heard where it talks alone; a turn where it
    never does is the diarization's guess at who else talks in overlapped speech, the part of
    diarization most often wrong, and no evidence that the voiceprint's person talks there.
    """
    # The other speakers' speech as disjoint spans (touching within the output's rounding: joined).
    spans: list[list[float]] = []
    for start, end in sorted((t.start, t.end) for t in result.turns if t.speaker != label):
        if spans and start <= spans[-1][1] + ROUNDING:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    out = np.zeros(frames, dtype=bool)
    if not spans:
        return out
    starts, ends = np.array(spans).T
    for turn in result.turns:
        if turn.speaker != label:
            continue
        span = int(np.searchsorted(starts, turn.start + ROUNDING, side="right")) - 1
        if span >= 0 and ends[span] + ROUNDING >= turn.end:
            out[int(turn.start / PIECE_STEP) : int(np.ceil(turn.end / PIECE_STEP))] = True
    return out


def _second_voice(
    result: DiarizationResult,
    label: str,
    match: str,
    voices: dict[str, Voice],
    matching: Matching,
    calibration: tuple[float, float, float],
    frames: int,
) -> tuple[np.ndarray, str | None] | None:
    """The frames of the speaker's second voice and the voiceprint it matches by itself, or None
    (`second_voices`)."""
    segments = result.voice_segments
    if segments is None or (cut := _halves(segments, label)) is None:
        return None
    halves, centroids = cut
    others = np.array([result.embeddings[o] for o in result.embeddings if o != label]).reshape(-1, DIMENSION)
    scores = _half_confidences(centroids, others, [voices[match]], calibration)[:, 0]
    if scores.max() < matching.threshold:
        return None
    # Both halves reach the threshold: one person, unless the segmentation heard two, and then
    # only the half closer to the match is that person.
    if scores.min() >= matching.threshold and not _heard_as_two(segments, label):
        return None
    second = int(np.argmin(scores))
    other = halves == second
    mine = segments.labels == label
    starts, ends = segments.starts[mine], segments.ends[mine]
    heard = _covered(starts[other], ends[other], frames) > _covered(starts[~other], ends[~other], frames)
    names = [name for name, voice in voices.items() if name != match and voice.seconds is not None]
    best = None
    if names:
        row = _half_confidences(centroids, others, [voices[name] for name in names], calibration)[second]
        # The best at or above the threshold; of equal scores, the last voiceprint given.
        last = len(row) - 1 - int(np.argmax(row[::-1]))
        best = names[last] if row[last] >= matching.threshold else None
    return heard, best


def second_voices(
    result: DiarizationResult,
    matches: dict[str, str | None],
    voices: dict[str, Voice],
    matching: Matching,
    calibration: tuple[float, float, float] = CALIBRATION,
) -> dict[str, SecondVoice]:
    """The matched speakers that hold a second voice or turns talked over throughout, and where (`SecondVoice`).

    Diarization sometimes gives two people one speaker, and the speaker then takes the name of
    either for the speech of both. Each matched speaker's segment embeddings (`result.voice_segments`)
    are cut in two halves; when one half reaches the threshold for its match by itself (its cosine
    and its margin over the other speakers and the other half, as `confidences` scores a speaker)
    and the other does not, or both do but the segmentation heard two people in the speaker
    (`_heard_as_two`) and the other scores lower, the speech mostly covered by the other half is
    another voice. That part is matched by itself with the other voiceprints (the best at or above
    the threshold), and is otherwise left unnamed. The speaker's turns that other speakers talk
    over from start to end (`_talked_over`) are left unnamed too. Nothing is cut at threshold 0
    (every speaker takes a name), nor for a version-1 voiceprint or a result without segment
    embeddings (community-1).
    """
    if result.voice_segments is None or matching.threshold <= 0:
        return {}
    frames = int(np.ceil(result.duration / PIECE_STEP))
    out = {}
    for label, match in matches.items():
        if match is None or voices[match].seconds is None:
            continue
        found = _second_voice(result, label, match, voices, matching, calibration, frames)
        talked_over = _talked_over(result, label, frames)
        if found is not None or talked_over.any():
            heard, best = found if found is not None else (np.zeros(frames, dtype=bool), None)
            out[label] = SecondVoice(heard, best, talked_over)
    return out


def named_pieces(
    start: float, end: float, match: str | None, second: SecondVoice | None
) -> list[tuple[float, float, str | None]]:
    """A turn of a speaker matched with `match` as (start, end, name) pieces: cut where the speaker's
    second voice (`second_voices`) talks, which takes its own name, and where it is talked over
    throughout, which takes none."""
    if second is None:
        return [(start, end, match)]
    first, last = int(start / PIECE_STEP), int(np.ceil(end / PIECE_STEP))
    other = second.frames[first:last].astype(np.int8)
    if not len(other):
        return [(start, end, match)]
    other = np.where(second.talked_over[first:last], 2, other)
    changes = np.flatnonzero(np.diff(other)) + 1
    bounds = [start, *(float(b) for b in (first + changes) * PIECE_STEP), end]
    names = [(match, second.match, None)[other[i]] for i in np.concatenate([[0], changes])]
    pieces: list[tuple[float, float, str | None]] = []
    for a, b, name in zip(bounds[:-1], bounds[1:], names, strict=True):
        # A sliver where a frame edge falls just inside the turn goes with its neighbour.
        if pieces and (b - a < PIECE_STEP / 2 or name == pieces[-1][2]):
            pieces[-1] = (pieces[-1][0], b, pieces[-1][2])
        elif pieces and pieces[-1][1] - pieces[-1][0] < PIECE_STEP / 2:
            pieces[-1] = (pieces[-1][0], b, name)
        else:
            pieces.append((a, b, name))
    return pieces


def voice_warnings(voices: dict[str, Voice]) -> list[str]:
    """What makes the confidences of some voiceprints less certain: little speech, or an old format."""
    out = []
    for label, voice in voices.items():
        if voice.seconds is None:
            out.append(
                f"The voiceprint of {label!r} is of format version 1, which does not say how much speech it "
                "holds: it is scored by the older calibration, which overrates voices that share a recording "
                "or a line. Make it again from its audio."
            )
        elif voice.seconds < GOOD_SPEECH_SECONDS:
            out.append(
                f"The voiceprint of {label!r} comes from only {voice.seconds:.1f} s of speech: its confidences "
                f"are less certain than those of a voiceprint from {GOOD_SPEECH_SECONDS:g} s or more."
            )
    return out


def identification(output: dict, result: DiarizationResult, voices: dict[str, Voice], matching: Matching) -> dict:
    """`output` (a diarization job output of `result`) with `identification` and `voiceprints` added,
    and warnings about the voiceprints after the result's own (in its `warnings` and the output's)."""
    matches, scores = match_speakers(result.embeddings, voices, matching)
    seconds = second_voices(result, matches, voices, matching)
    segments = []
    for turn in output["diarization"]:
        label = turn["speaker"]
        for start, end, match in named_pieces(turn["start"], turn["end"], matches.get(label), seconds.get(label)):
            piece = {"start": round(float(start), 3), "end": round(float(end), 3)}  # as `Turn.to_dict`
            segments.append({**turn, **piece, "speaker": match or label, "diarizationSpeaker": label, "match": match})
    speakers = [{"speaker": s, "match": matches.get(s), "confidence": scores.get(s, {})} for s in result.speakers]
    # The result carries them too: the command line prints a result's warnings.
    result.warnings += voice_warnings(voices)
    identified = {**output, "identification": segments, "voiceprints": speakers}
    if result.warnings:
        identified["warning"] = " ".join(result.warnings)
    return identified


def named_result(
    result: DiarizationResult, names: dict[str, str | None], identified: list[dict] | None = None
) -> DiarizationResult:
    """`result` with each speaker renamed to its match, where it has one (for RTTM, SRT, VTT and text).

    `identified` (the identify output's `identification` segments) names the parts of a speaker that
    `second_voices` found to be another voice: those of its turns take that voice's name, or keep the
    speaker's own label.

    Speakers matched with one name become one speaker: their turns are joined where they overlap
    or touch, so that each name has one list of turns.
    """

    apart: dict[str, list[tuple[float, float, str | None]]] = {}  # by label: its parts named otherwise
    for segment in identified or []:
        label = segment["diarizationSpeaker"]
        if segment["match"] != names.get(label):
            apart.setdefault(label, []).append((segment["start"], segment["end"], segment["match"]))

    def pieces(turn: Turn) -> list[Turn]:
        """The turn under its final names: cut where a part of its speaker is named otherwise."""
        own = names.get(turn.speaker) or turn.speaker
        out, at = [], turn.start
        for start, end, name in sorted(apart.get(turn.speaker, [])):
            # The segments' times are rounded to the millisecond: what is left of a turn within that is the same time.
            start = turn.start if start - turn.start < ROUNDING else start
            end = turn.end if turn.end - end < ROUNDING else end
            start, end = max(start, turn.start), min(end, turn.end)
            if end - start < ROUNDING:
                continue
            if start > at:
                out.append(replace(turn, start=at, end=start, speaker=own))
            out.append(replace(turn, start=start, end=end, speaker=name or turn.speaker))
            at = end
        if at < turn.end:
            out.append(replace(turn, start=at, speaker=own))
        return out

    def rename(turns: list[Turn]) -> list[Turn]:
        out: list[Turn] = []
        last: dict[str, int] = {}  # each name's latest turn in `out`
        for turn in sorted((piece for t in turns for piece in pieces(t)), key=lambda t: t.start):
            name = turn.speaker
            previous = out[last[name]] if name in last else None
            if previous is not None and turn.start <= previous.end:
                out[last[name]] = replace(previous, end=max(previous.end, turn.end), confidence=None)
            else:
                last[name] = len(out)
                out.append(turn)
        return out

    turns, exclusive = rename(result.turns), rename(result.exclusive_turns)
    named = [names.get(s) or s for s in result.speakers]
    return replace(
        result,
        turns=turns,
        exclusive_turns=exclusive,
        speakers=list(dict.fromkeys(named + [t.speaker for t in turns])),
    )
