"""Hyperparameters of each pipeline, in one place."""

from __future__ import annotations

from dataclasses import dataclass, replace

from diarist.nets.pyannet import FRAME_STEP_SAMPLES, SAMPLE_RATE


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that differs between models. Times are in seconds unless the name says frames."""

    name: str
    # Segmentation: 10 s windows every `step_frames` output frames (16.875 ms each). A whole
    # number of frames keeps every window on one global frame grid.
    step_frames: int
    batch_size: int = 8  # windows per segmentation batch: larger ones cost memory, not time
    # Embeddings: the CAM++ backbone runs once over the audio in chunks of this length (plus
    # context on both sides); each (window, local speaker) pools its own frames from it.
    embedding_chunk: float = 30.0
    embedding_context: float = 2.0
    # A (window, speaker) pair trains the clustering only with this much speech without overlap.
    min_clean_speech: float = 0.5
    # Agglomerative clustering of unit-length embeddings: scipy linkage method and distance cut.
    clustering_linkage: str = "centroid"
    clustering_threshold: float = 0.8
    # Telephone audio pulls voices together: a recording whose measured bandwidth is under
    # `narrowband_hz` (the calls of bench/data measure 3.8-4.6 kHz, everything else 6.4-8 kHz)
    # is cut at `clustering_threshold + narrowband_threshold_shift`.
    narrowband_hz: float = 5000.0
    narrowband_threshold_shift: float = 0.0
    # Clusters holding less than this share of the training embeddings are folded into the
    # nearest larger one. The dev set's 30 s files never reach it; it guards long recordings
    # against clusters of a few stray embeddings.
    min_cluster_share: float = 0.02
    max_clustering_embeddings: int = 4000
    # One speaker found, but the last merge of the tree within this distance of the cut: the
    # output warns that a second voice may be hiding (clustering._lone_voice_warnings).
    lone_voice_margin: float = 0.1
    # When the cut finds this many speakers or more (or the caller asks for that many) on a
    # recording of `many_speakers_min_duration` s or longer, they are re-clustered (over the pairs
    # with `vbx_min_clean_speech` of clean speech: a rare voice on a long recording needs its short
    # turns) on embeddings centred on the recording's mean, starting from a cut at
    # `vbx_init_threshold` refined by variational Bayes (clustering._variational_bayes: `vbx_fa`
    # scales the evidence, `vbx_fb` the prior). A requested count searches `vbx_fa` for it.
    # Shorter recordings keep the cut: the speaker space that pass estimates from the recording
    # rests on too few embeddings there, and it split 6 or 8 voices of a minute or two into 8 to
    # 12 speakers (bench/voices.py), where the cut finds about the truth.
    many_speakers: int = 6
    many_speakers_min_duration: float = 300.0
    vbx_min_clean_speech: float = 0.5
    vbx_init_linkage: str = "centroid"
    vbx_init_threshold: float = 0.85
    vbx_dims: int = 16
    vbx_fa: float = 0.05
    vbx_fb: float = 0.8
    vbx_init_smoothing: float = 7.0
    vbx_iterations: int = 20
    vbx_min_weight: float = 1e-3
    # Rounds of centroid refinement after the first assignment (0: none).
    refinement_rounds: int = 0
    # Resegmentation after clustering (pipeline/resegmentation.py): short segments of each local
    # speaker's clean speech re-decide its speaker, smoothed by Viterbi. Off when False. Segment
    # length and hop as in 3D-Speaker, not tuned; prior and penalty chosen by cross-validation.
    resegmentation: bool = False
    resegmentation_segment: float = 1.5  # segment length, s
    resegmentation_hop: float = 0.75  # segment hop, s
    resegmentation_min_speech: float = 0.5  # clean speech a segment needs to be scored, s
    resegmentation_prior: float = 0.5  # weight of the window-level similarity in each segment's score
    resegmentation_switch_penalty: float = 0.05  # cost of a change of speaker between segments
    # Reconstruction: gaps shorter than this inside one speaker's speech are filled.
    min_duration_off: float = 0.0
    # Speaker scores are averaged over this many frames (odd; 1: none) before each frame's
    # speakers are picked, so that the windows' disagreement at a speaker change does not
    # flip the winner frame by frame. Tuned per model with the other knobs (bench/cv.py).
    score_smoothing_frames: int = 1
    # Turns shorter than this are artefacts: in the exclusive output their frames go to the
    # speaker talking next to them (the one scoring higher over them when both sides talk) or
    # to silence; in the overlapping output they are dropped. Gaps are filled first.
    # Cross-validated (bench/cv.py): 0.1 s costs nothing against no clean-up, 0.25 s does.
    min_duration_on: float = 0.1
    # Confidence curve resolution (seconds per value) and turn-level softmax sharpness.
    confidence_resolution: float = 0.02
    turn_confidence_temperature: float = 10.0

    def for_bandwidth(self, bandwidth: float | None) -> PipelineConfig:
        """This config with the cut for audio of `bandwidth` Hz (None: not measured)."""
        if bandwidth is None or bandwidth >= self.narrowband_hz:
            return self
        return replace(self, clustering_threshold=self.clustering_threshold + self.narrowband_threshold_shift)

    @property
    def step_samples(self) -> int:
        return self.step_frames * FRAME_STEP_SAMPLES

    @property
    def step_seconds(self) -> float:
        return self.step_samples / SAMPLE_RATE


# The grid point with the lowest pooled DER on the dev and wide sets together (bench/cv.py, which
# also reports the cross-validated DER of tuning this way, each corpus scored by a setting chosen
# without it: docs/benchmarks.md). The many-speaker fields were chosen on the long-form benchmark,
# as no clip of those sets reaches them (see their comment above).
# community-1: 3.00 s step.
COMMUNITY_1 = PipelineConfig(
    name="community-1",
    step_frames=178,
    clustering_threshold=0.75,
    min_clean_speech=1.0,
    min_duration_off=0.25,
)
# precision-2: 1.25 s step, centroid refinement, resegmentation.
PRECISION_2 = PipelineConfig(
    name="precision-2",
    step_frames=74,
    clustering_threshold=0.75,
    narrowband_threshold_shift=-0.05,
    min_clean_speech=1.0,
    vbx_min_clean_speech=1.0,
    min_duration_off=0.25,
    refinement_rounds=1,
    score_smoothing_frames=5,
    resegmentation=True,
)

CONFIGS = {config.name: config for config in (COMMUNITY_1, PRECISION_2)}
