from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("uri", "timestamp_s", "source_index")
    URI_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    uri: str
    timestamp_s: float
    source_index: int
    def __init__(self, uri: _Optional[str] = ..., timestamp_s: _Optional[float] = ..., source_index: _Optional[int] = ...) -> None: ...

class SynthesisConfig(_message.Message):
    __slots__ = ("fps", "num_frames", "num_masked", "num_distractors", "kappa", "image_size", "image_format", "image_quality", "seed", "embedder", "samples_per_video", "allow_edge_mask", "neighbourhood_s", "max_distractor_similarity", "index_base", "distractor_sampling", "max_pixels", "max_decoded_frames")
    FPS_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_MASKED_FIELD_NUMBER: _ClassVar[int]
    NUM_DISTRACTORS_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_VIDEO_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EDGE_MASK_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURHOOD_S_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTRACTOR_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    INDEX_BASE_FIELD_NUMBER: _ClassVar[int]
    DISTRACTOR_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    fps: float
    num_frames: int
    num_masked: int
    num_distractors: int
    kappa: float
    image_size: int
    image_format: str
    image_quality: int
    seed: int
    embedder: str
    samples_per_video: int
    allow_edge_mask: bool
    neighbourhood_s: float
    max_distractor_similarity: float
    index_base: int
    distractor_sampling: str
    max_pixels: int
    max_decoded_frames: int
    def __init__(self, fps: _Optional[float] = ..., num_frames: _Optional[int] = ..., num_masked: _Optional[int] = ..., num_distractors: _Optional[int] = ..., kappa: _Optional[float] = ..., image_size: _Optional[int] = ..., image_format: _Optional[str] = ..., image_quality: _Optional[int] = ..., seed: _Optional[int] = ..., embedder: _Optional[str] = ..., samples_per_video: _Optional[int] = ..., allow_edge_mask: _Optional[bool] = ..., neighbourhood_s: _Optional[float] = ..., max_distractor_similarity: _Optional[float] = ..., index_base: _Optional[int] = ..., distractor_sampling: _Optional[str] = ..., max_pixels: _Optional[int] = ..., max_decoded_frames: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("answer", "num_candidates", "index_base", "candidate_times_s", "gap_start_s", "gap_end_s")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    NUM_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    INDEX_BASE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_TIMES_S_FIELD_NUMBER: _ClassVar[int]
    GAP_START_S_FIELD_NUMBER: _ClassVar[int]
    GAP_END_S_FIELD_NUMBER: _ClassVar[int]
    answer: _containers.RepeatedScalarFieldContainer[int]
    num_candidates: int
    index_base: int
    candidate_times_s: _containers.RepeatedScalarFieldContainer[float]
    gap_start_s: float
    gap_end_s: float
    def __init__(self, answer: _Optional[_Iterable[int]] = ..., num_candidates: _Optional[int] = ..., index_base: _Optional[int] = ..., candidate_times_s: _Optional[_Iterable[float]] = ..., gap_start_s: _Optional[float] = ..., gap_end_s: _Optional[float] = ...) -> None: ...

class Difficulty(_message.Message):
    __slots__ = ("min_similarity", "mean_similarity", "max_similarity", "mean_distance_s")
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MAX_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_DISTANCE_S_FIELD_NUMBER: _ClassVar[int]
    min_similarity: float
    mean_similarity: float
    max_similarity: float
    mean_distance_s: float
    def __init__(self, min_similarity: _Optional[float] = ..., mean_similarity: _Optional[float] = ..., max_similarity: _Optional[float] = ..., mean_distance_s: _Optional[float] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("id", "source_uri", "source_sha256", "context_frames", "gap_position", "candidates", "label", "prompt", "config", "seed", "difficulty")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FRAMES_FIELD_NUMBER: _ClassVar[int]
    GAP_POSITION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_uri: str
    source_sha256: str
    context_frames: _containers.RepeatedCompositeFieldContainer[Frame]
    gap_position: int
    candidates: _containers.RepeatedCompositeFieldContainer[Frame]
    label: Label
    prompt: str
    config: SynthesisConfig
    seed: int
    difficulty: Difficulty
    def __init__(self, id: _Optional[str] = ..., source_uri: _Optional[str] = ..., source_sha256: _Optional[str] = ..., context_frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., gap_position: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., prompt: _Optional[str] = ..., config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., seed: _Optional[int] = ..., difficulty: _Optional[_Union[Difficulty, _Mapping]] = ...) -> None: ...
