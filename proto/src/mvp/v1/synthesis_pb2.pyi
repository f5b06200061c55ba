from mvp.v1 import sample_pb2 as _sample_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_STATUS_UNSPECIFIED: _ClassVar[VideoStatus]
    VIDEO_STATUS_OK: _ClassVar[VideoStatus]
    VIDEO_STATUS_SKIPPED: _ClassVar[VideoStatus]
    VIDEO_STATUS_FAILED: _ClassVar[VideoStatus]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
VIDEO_STATUS_UNSPECIFIED: VideoStatus
VIDEO_STATUS_OK: VideoStatus
VIDEO_STATUS_SKIPPED: VideoStatus
VIDEO_STATUS_FAILED: VideoStatus
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class VideoResult(_message.Message):
    __slots__ = ("uri", "status", "reason_code", "reason", "num_samples", "frames_decoded", "seconds", "decode_seconds")
    URI_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    uri: str
    status: VideoStatus
    reason_code: str
    reason: str
    num_samples: int
    frames_decoded: int
    seconds: float
    decode_seconds: float
    def __init__(self, uri: _Optional[str] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., reason_code: _Optional[str] = ..., reason: _Optional[str] = ..., num_samples: _Optional[int] = ..., frames_decoded: _Optional[int] = ..., seconds: _Optional[float] = ..., decode_seconds: _Optional[float] = ...) -> None: ...

class SynthesizeVideoRequest(_message.Message):
    __slots__ = ("video_uri", "output_uri", "config")
    VIDEO_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    video_uri: str
    output_uri: str
    config: _sample_pb2.SynthesisConfig
    def __init__(self, video_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., config: _Optional[_Union[_sample_pb2.SynthesisConfig, _Mapping]] = ...) -> None: ...

class SynthesizeVideoResponse(_message.Message):
    __slots__ = ("result", "samples")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    result: VideoResult
    samples: _containers.RepeatedCompositeFieldContainer[_sample_pb2.Sample]
    def __init__(self, result: _Optional[_Union[VideoResult, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[_sample_pb2.Sample, _Mapping]]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "input_uri", "output_uri", "config", "videos_total", "videos_ok", "videos_skipped", "videos_failed", "samples_written", "results", "error", "shard_index", "shard_count")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_OK_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FAILED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    input_uri: str
    output_uri: str
    config: _sample_pb2.SynthesisConfig
    videos_total: int
    videos_ok: int
    videos_skipped: int
    videos_failed: int
    samples_written: int
    results: _containers.RepeatedCompositeFieldContainer[VideoResult]
    error: str
    shard_index: int
    shard_count: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., input_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., config: _Optional[_Union[_sample_pb2.SynthesisConfig, _Mapping]] = ..., videos_total: _Optional[int] = ..., videos_ok: _Optional[int] = ..., videos_skipped: _Optional[int] = ..., videos_failed: _Optional[int] = ..., samples_written: _Optional[int] = ..., results: _Optional[_Iterable[_Union[VideoResult, _Mapping]]] = ..., error: _Optional[str] = ..., shard_index: _Optional[int] = ..., shard_count: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("input_uri", "output_uri", "config", "job_id", "shard_index", "shard_count")
    INPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    input_uri: str
    output_uri: str
    config: _sample_pb2.SynthesisConfig
    job_id: str
    shard_index: int
    shard_count: int
    def __init__(self, input_uri: _Optional[str] = ..., output_uri: _Optional[str] = ..., config: _Optional[_Union[_sample_pb2.SynthesisConfig, _Mapping]] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., shard_count: _Optional[int] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "summary_only")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_ONLY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    summary_only: bool
    def __init__(self, job_id: _Optional[str] = ..., summary_only: _Optional[bool] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job", "last_result")
    JOB_FIELD_NUMBER: _ClassVar[int]
    LAST_RESULT_FIELD_NUMBER: _ClassVar[int]
    job: Job
    last_result: VideoResult
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., last_result: _Optional[_Union[VideoResult, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
