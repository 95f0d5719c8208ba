"""Step 3: group the (window, local speaker) embeddings into global speakers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment

from diarist.pipeline.config import PipelineConfig
from diarist.vocabulary import count_conflicts


@dataclass(frozen=True)
class SpeakerBounds:
    """How many speakers the caller allows: exactly `min` when `min == max`; 0 means no minimum."""

    min: int = 0
    max: int | None = None

    @classmethod
    def from_request(
        cls, num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> SpeakerBounds:
        """Validate the three ways of constraining the count; raises ValueError when they conflict."""
        for name, value in (
            ("num_speakers", num_speakers),
            ("min_speakers", min_speakers),
            ("max_speakers", max_speakers),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, other in count_conflicts(num_speakers, min_speakers, max_speakers):
            if other == "num_speakers":
                raise ValueError(f"{name} cannot be used together with num_speakers")
            raise ValueError(f"min_speakers ({min_speakers}) must be <= max_speakers ({max_speakers})")
        if num_speakers is not None:
            return cls(num_speakers, num_speakers)
        return cls(min_speakers or 0, max_speakers)

    def clamp(self, count: int) -> int:
        count = max(count, self.min)
        return count if self.max is None else min(count, self.max)


@dataclass
class Clustering:
    """Global speaker of each (window, local speaker) and how close each one is to every speaker."""

    assignment: np.ndarray  # (windows, 3) int, -1 for silent local speakers
    similarity: np.ndarray  # (windows, 3, speakers) cosine similarity to each speaker's centroid
    warnings: list[str] = field(default_factory=list)  # for the output: doubts about the count

    @property
    def num_speakers(self) -> int:
        return self.similarity.shape[-1]


def unit_vectors(x: np.ndarray) -> np.ndarray:
    """`x` scaled to unit length along its last axis (zero vectors stay near zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def _cut(x: np.ndarray, threshold: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Linkage tree of unit vectors `x` (two or more) and its labels (0..K-1) at euclidean `threshold`."""
    tree = linkage(x, method=method, metric="euclidean")
    return tree, fcluster(tree, threshold, criterion="distance") - 1


def _centroids(x: np.ndarray, labels: np.ndarray, clusters: Iterable[int] | None = None) -> np.ndarray:
    """Unit mean of the rows of `x` in each cluster (all of them, 0..K-1, unless `clusters` names some)."""
    clusters = range(labels.max() + 1) if clusters is None else clusters
    return unit_vectors(np.stack([x[labels == k].mean(axis=0) for k in clusters]))


def _fold_small(x: np.ndarray, labels: np.ndarray, share: float) -> np.ndarray:
    """Fold clusters holding less than `share` of `x` into the nearest larger one: mostly noise."""
    sizes = np.bincount(labels)
    large = np.flatnonzero(sizes >= share * len(x))
    if 0 < len(large) < len(sizes):
        centroids = _centroids(x, labels, large)
        labels = large[np.argmax(x @ centroids.T, axis=1)]
    return np.unique(labels, return_inverse=True)[1]


def _speaker_space(x: np.ndarray, labels: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Map `x` where speakers are told apart best, estimated from this recording alone.

    A stand-in for the PLDA that VBx expects (none is trained for CAM++): centred on the
    recording's mean, scaled so that the spread of an embedding around its first-pass cluster's
    mean is 1 in every direction, and rotated onto the axes along which the first-pass
    clusters' means spread most. Returns the features (n, dims) and the spread of speaker
    means along each axis (dims,): the between-speaker variances, in units of within-speaker ones.
    """
    centred = x - x.mean(axis=0)
    means = np.stack([centred[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    within = centred - means[labels]
    scale = np.sqrt(max(float((within**2).sum()) / within.size, 1e-6))
    sizes = np.bincount(labels).astype(float)
    between = (means * sizes[:, None]).T @ means / len(x) / scale**2
    variances, axes = np.linalg.eigh(between)
    order = np.argsort(variances)[::-1][:dims]
    return centred @ axes[:, order] / scale, np.maximum(variances[order], 1e-6)


def _variational_bayes(
    features: np.ndarray, between: np.ndarray, labels: np.ndarray, config: PipelineConfig, fa: float | None = None
) -> np.ndarray:
    """Refine `labels` VBx-style (without the HMM): speakers no data supports lose all weight.

    Each speaker's mean has a Gaussian prior of variances `between`; within-speaker noise is
    unit. `fa` (default `vbx_fa`) scales the evidence of each embedding (they overlap, so are
    not independent) and `vbx_fb` the prior's pull; responsibilities and speaker weights are
    re-estimated in turn. The more the evidence weighs, the more speakers survive.
    """
    fa = config.vbx_fa if fa is None else fa
    speakers = labels.max() + 1
    logits = config.vbx_init_smoothing * np.eye(speakers)[labels]
    responsibility = np.exp(logits - logits.max(axis=1, keepdims=True))
    responsibility /= responsibility.sum(axis=1, keepdims=True)
    weights = np.full(speakers, 1.0 / speakers)
    projected = features * np.sqrt(between)
    ratio = fa / config.vbx_fb
    for _ in range(config.vbx_iterations):
        precision = 1.0 / (1.0 + ratio * responsibility.sum(axis=0)[:, None] * between)
        means = ratio * precision * (responsibility.T @ projected)
        log_likelihood = fa * (projected @ means.T - 0.5 * ((precision + means**2) @ between))
        log_posterior = log_likelihood + np.log(np.maximum(weights, 1e-300))
        responsibility = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        previous, weights = weights, responsibility.sum(axis=0) / len(features)
        if np.abs(weights - previous).max() < 1e-6:
            break
    kept = np.flatnonzero(weights > config.vbx_min_weight)
    return np.unique(np.argmax(responsibility[:, kept], axis=1), return_inverse=True)[1]


FA_RANGE = (1e-3, 2.0)  # evidence weights searched for a requested count (vbx_fa is 0.05)
FA_SEARCH_STEPS = 14


@dataclass
class _CentredSpace:
    """The many-speaker view of unit embeddings: centred on their mean, a first-pass cut, and
    the speaker space estimated from it, in which variational Bayes decides the speakers."""

    centred: np.ndarray
    first_pass: np.ndarray
    features: np.ndarray
    between: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, config: PipelineConfig) -> _CentredSpace:
        centred = unit_vectors(x - x.mean(axis=0))
        _, first_pass = _cut(centred, config.vbx_init_threshold, config.vbx_init_linkage)
        first_pass = np.unique(first_pass, return_inverse=True)[1]
        return cls(centred, first_pass, *_speaker_space(centred, first_pass, config.vbx_dims))

    def speakers(self, config: PipelineConfig, fa: float | None = None) -> np.ndarray:
        return _variational_bayes(self.features, self.between, self.first_pass, config, fa)

    def speakers_counting(self, wanted: int, config: PipelineConfig) -> np.ndarray:
        """Labels with exactly `wanted` speakers (given at least that many embeddings).

        A requested count moves the one knob by which VBx decides how many speakers the data
        supports, the weight of the evidence, until it gives that count: the speakers stay those
        the data backs most. Bisection in log scale; when no weight gives the count exactly,
        the closest result is split or merged to it. Cutting the centred tree at the count
        instead scored far worse than giving no count at all (docs/benchmarks.md).
        """
        low, high = np.log(FA_RANGE[0]), np.log(FA_RANGE[1])
        best = self.speakers(config)
        for _ in range(FA_SEARCH_STEPS):
            if best.max() + 1 == wanted:
                break
            middle = (low + high) / 2
            labels = self.speakers(config, float(np.exp(middle)))
            if abs(labels.max() + 1 - wanted) < abs(best.max() + 1 - wanted):
                best = labels
            low, high = (middle, high) if labels.max() + 1 < wanted else (low, middle)
        return _split_or_merge(self.centred, best, wanted)


def _split_or_merge(x: np.ndarray, labels: np.ndarray, wanted: int) -> np.ndarray:
    """`labels` brought to `wanted` (at most `len(x)`) clusters one step at a time, every other
    cluster left as it was: the two closest merged, or the most scattered split in two."""
    labels = labels.copy()
    while labels.max() + 1 > wanted:
        centroids = _centroids(x, labels)
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -np.inf)
        a, b = sorted(np.unravel_index(np.argmax(similarity), similarity.shape))
        labels[labels == b] = a
        labels = np.unique(labels, return_inverse=True)[1]
    while labels.max() + 1 < wanted:
        sizes = np.bincount(labels)
        scatter = [
            ((x[labels == k] - x[labels == k].mean(axis=0)) ** 2).sum() if sizes[k] > 1 else -1.0
            for k in range(len(sizes))
        ]
        members = np.flatnonzero(labels == int(np.argmax(scatter)))
        halves = fcluster(linkage(x[members], method="average"), 2, criterion="maxclust")
        if halves.max() == 1:  # no cut of its tree gives two (identical embeddings, tied merges): any split will do
            halves = 1 + (np.arange(len(members)) >= len(members) // 2)
        labels[members[halves == 2]] = labels.max() + 1
    return labels


def _many_speakers(x: np.ndarray, bounds: SpeakerBounds, config: PipelineConfig) -> np.ndarray:
    """Cluster labels (0..K-1) of unit vectors `x` from a recording with many speakers.

    The recording's mean embedding is then a fair estimate of what all voices share: taking it
    away leaves what tells them apart, and a variational Bayes pass over a finer cut of the
    centred embeddings decides how many speakers the data supports (or finds the count asked for).
    """
    space = _CentredSpace.of(x, config)
    labels = space.speakers(config)
    wanted = min(bounds.clamp(labels.max() + 1), len(x))
    return labels if wanted == labels.max() + 1 else space.speakers_counting(wanted, config)


def _few_speakers(
    x: np.ndarray, tree: np.ndarray, labels: np.ndarray, bounds: SpeakerBounds, config: PipelineConfig
) -> tuple[np.ndarray, list[str]]:
    """The distance cut's `labels` of unit vectors `x` (its linkage `tree`) brought within `bounds`,
    and warnings about the count found. With two or three speakers the recording's mean is only
    their midpoint, and centring would blow up differences within one voice: the cut decides."""
    found = labels.max() + 1
    wanted = bounds.clamp(found)
    if wanted == found == 1 and bounds.max != 1:  # a count of one asked for is no doubt
        return labels, _lone_voice_warnings(float(tree[-1, 2]), config)
    if wanted != found:
        wanted = min(wanted, len(x))
        labels = fcluster(tree, wanted, criterion="maxclust") - 1
        if labels.max() + 1 != wanted:
            # Centroid linkage can merge at a smaller distance than an earlier merge, and then no
            # cut of its tree gives `wanted` clusters; average linkage's tree has no such inversions.
            labels = fcluster(linkage(x, method="average"), wanted, criterion="maxclust") - 1
        if labels.max() + 1 != wanted:  # tied merges (identical embeddings): no tree gives it
            labels = _split_or_merge(x, np.unique(labels, return_inverse=True)[1], wanted)
    return labels, []


def _lone_voice_warnings(last_merge: float, config: PipelineConfig) -> list[str]:
    """A warning when one speaker was found but its two halves merged close to the cut.

    Codecs at low bit rates make different voices sound alike: a 24 kbps mp3 of the two-speaker
    sample merges at 0.775 against the 0.8 cut, where one reader's voice merges near 0.2.
    """
    if last_merge < config.clustering_threshold - config.lone_voice_margin:
        return []
    return [
        f"Only one speaker was found, but two groups of its speech are almost as far apart as two "
        f"speakers (distance {last_merge:.2f}, speakers split at {config.clustering_threshold:g}): "
        "low-bitrate or narrow-band audio can make different voices sound alike. If more than one "
        "person speaks, ask for at least 2 speakers (minSpeakers / --min-speakers)."
    ]


def _assign(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map each active local speaker to a centroid, at most one per centroid in each window.

    Local speakers left over when a window has more of them than there are centroids go to
    their closest centroid anyway: keeping their speech beats dropping it.
    """
    similarity = np.einsum("wld,kd->wlk", np.nan_to_num(unit_vectors(embeddings)), centroids)
    active = ~np.isnan(embeddings[..., 0])
    assignment = np.full(active.shape, -1)
    for w in np.flatnonzero(active.any(axis=1)):
        local = np.flatnonzero(active[w])
        rows, cols = linear_sum_assignment(-similarity[w, local])
        assignment[w, local] = np.argmax(similarity[w, local], axis=1)
        assignment[w, local[rows]] = cols
    return assignment, similarity


def _training_set(
    active: np.ndarray, clean_seconds: np.ndarray, min_clean: float, needed: int, config: PipelineConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The (window, local speaker) pairs with `min_clean` seconds of clean speech (every active
    one when fewer than `needed` have it): their mask, and their (n, 2) indices subsampled in
    time to at most `max_clustering_embeddings`, as the linkage tree costs O(n^2) memory."""
    train = active & (clean_seconds >= min_clean)
    train = train if train.sum() >= needed else active
    where = np.argwhere(train)
    if len(where) > config.max_clustering_embeddings:
        where = where[np.linspace(0, len(where) - 1, config.max_clustering_embeddings).astype(int)]
    return train, where


def cluster_embeddings(
    embeddings: np.ndarray, clean_seconds: np.ndarray, bounds: SpeakerBounds, config: PipelineConfig
) -> Clustering:
    """Cluster (windows, 3, dim) embeddings (NaN where a local speaker is silent).

    One distance cut over the embeddings backed by `config.min_clean_speech` seconds of speech
    without overlap (all of them when there are too few such) serves recordings with a few
    speakers. Once it finds `many_speakers` or more (or the caller asks for that many) on a
    recording of `many_speakers_min_duration` or longer, the many-speaker pass decides, over the
    embeddings with `vbx_min_clean_speech`: it weighs evidence statistically, and a rare voice on
    a long recording needs its short turns. Every active embedding is then assigned to a speaker.
    """
    active = ~np.isnan(embeddings[..., 0])
    needed = max(2, bounds.min)  # a requested count may need the short turns too
    train, where = _training_set(active, clean_seconds, config.min_clean_speech, needed, config)
    x = unit_vectors(embeddings[where[:, 0], where[:, 1]])
    labels, warnings = np.zeros(len(x), dtype=int), []
    if len(x) >= 2:
        tree, labels = _cut(x, config.clustering_threshold, config.clustering_linkage)
        labels = _fold_small(x, labels, config.min_cluster_share)
        long_enough = len(embeddings) * config.step_seconds >= config.many_speakers_min_duration
        if long_enough and max(labels.max() + 1, bounds.min) >= config.many_speakers:
            train, where = _training_set(active, clean_seconds, config.vbx_min_clean_speech, needed, config)
            x = unit_vectors(embeddings[where[:, 0], where[:, 1]])
            labels = _many_speakers(x, bounds, config)
        else:
            labels, warnings = _few_speakers(x, tree, labels, bounds, config)
    if len(labels) == 0:
        return Clustering(np.full(active.shape, -1), np.zeros((*active.shape, 0)))
    centroids = _centroids(x, labels)
    assignment, similarity = _assign(embeddings, centroids)
    for _ in range(config.refinement_rounds):
        # Re-estimate each centroid from everything assigned to it, weighted by clean speech.
        weights = np.where(train, clean_seconds, 0.0)
        members = [(assignment == k) & train for k in range(len(centroids))]
        if any(not m.any() for m in members):
            break
        unit = np.nan_to_num(unit_vectors(embeddings))
        centroids = unit_vectors(np.stack([(unit[m] * weights[m, None]).sum(axis=0) for m in members]))
        assignment, similarity = _assign(embeddings, centroids)
    for k in range(len(centroids)):
        if not (assignment == k).any():
            # A cluster the caller's count called for, whose centroid no local speaker prefers:
            # it keeps the embeddings it was made of, or it would vanish.
            own = where[labels == k]
            assignment[own[:, 0], own[:, 1]] = k
    return Clustering(assignment, similarity, warnings)


def speaker_centroids(
    embeddings: np.ndarray, clean_seconds: np.ndarray, assignment: np.ndarray, num_speakers: int
) -> np.ndarray:
    """(speakers, dim) unit centroids: each speaker's assigned window embeddings, weighted by clean speech.

    `assignment` gives the speaker of each (window, local speaker) of `embeddings`, -1 for none. A
    speaker whose members have no clean speech weighs them equally.
    """
    unit = np.nan_to_num(unit_vectors(embeddings.astype(np.float64)))
    centroids = np.zeros((num_speakers, embeddings.shape[-1]))
    for k in range(num_speakers):
        members = assignment == k
        weights = clean_seconds[members] if clean_seconds[members].sum() > 0 else members[members].astype(float)
        centroids[k] = (unit[members] * weights[:, None]).sum(axis=0)
    return unit_vectors(centroids)


def keep_requested_speakers(binary: np.ndarray, scores: np.ndarray, minimum: int) -> np.ndarray:
    """Make up to `minimum` speakers speak in (frames, speakers) `binary`.

    A speaker the clustering kept can still win no frame: where windows overlap, most of them may
    give the same voice to another speaker. While fewer than `minimum` speak, each silent speaker
    heard where someone speaks, the most active there first, takes the frames of speech where its
    share `scores` peaks, in place of the weakest speaker there (so the number of voices in a frame
    stays as it was); a speaker is never displaced from the last frames it speaks in. Frames where
    nobody speaks stay silent: a requested count never makes turns out of silence.
    """
    binary = binary.copy()
    heard = scores * binary.any(axis=1, keepdims=True)
    silent = np.flatnonzero(~binary.any(axis=0) & heard.any(axis=0))
    for speaker in silent[np.argsort(-heard[:, silent].sum(axis=0), kind="stable")]:
        if binary.any(axis=0).sum() >= minimum:
            break
        frames = np.flatnonzero(heard[:, speaker] == heard[:, speaker].max())
        binary[frames, speaker] = True
        for frame in frames:
            rivals = [k for k in np.flatnonzero(binary[frame]) if k != speaker and binary[:, k].sum() > 1]
            if rivals:
                binary[frame, min(rivals, key=lambda k: scores[frame, k])] = False
    return binary
