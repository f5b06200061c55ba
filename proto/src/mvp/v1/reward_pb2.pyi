from mvp.v1 import sample_pb2 as _sample_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardConfig(_message.Message):
    __slots__ = ("format_weight", "selection_weight", "ordering_weight", "exact_weight", "soft", "soft_tau_s", "soft_max_credit")
    FORMAT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SELECTION_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORDERING_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    EXACT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    SOFT_TAU_S_FIELD_NUMBER: _ClassVar[int]
    SOFT_MAX_CREDIT_FIELD_NUMBER: _ClassVar[int]
    format_weight: float
    selection_weight: float
    ordering_weight: float
    exact_weight: float
    soft: bool
    soft_tau_s: float
    soft_max_credit: float
    def __init__(self, format_weight: _Optional[float] = ..., selection_weight: _Optional[float] = ..., ordering_weight: _Optional[float] = ..., exact_weight: _Optional[float] = ..., soft: _Optional[bool] = ..., soft_tau_s: _Optional[float] = ..., soft_max_credit: _Optional[float] = ...) -> None: ...

class ScoreItem(_message.Message):
    __slots__ = ("completion", "label", "label_json")
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_JSON_FIELD_NUMBER: _ClassVar[int]
    completion: str
    label: _sample_pb2.Label
    label_json: str
    def __init__(self, completion: _Optional[str] = ..., label: _Optional[_Union[_sample_pb2.Label, _Mapping]] = ..., label_json: _Optional[str] = ...) -> None: ...

class RewardComponents(_message.Message):
    __slots__ = ("format", "selection", "ordering", "exact", "soft")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    format: float
    selection: float
    ordering: float
    exact: float
    soft: float
    def __init__(self, format: _Optional[float] = ..., selection: _Optional[float] = ..., ordering: _Optional[float] = ..., exact: _Optional[float] = ..., soft: _Optional[float] = ...) -> None: ...

class RewardResult(_message.Message):
    __slots__ = ("reward", "components", "failure_reason", "failure_detail", "parsed_answer", "slots")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    PARSED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    reward: float
    components: RewardComponents
    failure_reason: str
    failure_detail: str
    parsed_answer: _containers.RepeatedScalarFieldContainer[int]
    slots: _containers.RepeatedCompositeFieldContainer[AnswerSlot]
    def __init__(self, reward: _Optional[float] = ..., components: _Optional[_Union[RewardComponents, _Mapping]] = ..., failure_reason: _Optional[str] = ..., failure_detail: _Optional[str] = ..., parsed_answer: _Optional[_Iterable[int]] = ..., slots: _Optional[_Iterable[_Union[AnswerSlot, _Mapping]]] = ...) -> None: ...

class AnswerSlot(_message.Message):
    __slots__ = ("start", "end", "selected", "in_place", "reward")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    IN_PLACE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    selected: bool
    in_place: bool
    reward: float
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., selected: _Optional[bool] = ..., in_place: _Optional[bool] = ..., reward: _Optional[float] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("items", "config", "include_slots")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    config: RewardConfig
    include_slots: bool
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ..., config: _Optional[_Union[RewardConfig, _Mapping]] = ..., include_slots: _Optional[bool] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RewardResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RewardResult, _Mapping]]] = ...) -> None: ...

class ScoreStreamRequest(_message.Message):
    __slots__ = ("request_id", "item", "config", "include_slots")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    item: ScoreItem
    config: RewardConfig
    include_slots: bool
    def __init__(self, request_id: _Optional[str] = ..., item: _Optional[_Union[ScoreItem, _Mapping]] = ..., config: _Optional[_Union[RewardConfig, _Mapping]] = ..., include_slots: _Optional[bool] = ...) -> None: ...

class ScoreStreamResponse(_message.Message):
    __slots__ = ("request_id", "result", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: RewardResult
    error: str
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[_Union[RewardResult, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...
