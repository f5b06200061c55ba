"""Every config message survives its proto and JSON round-trips unchanged, zero values included
(issue #16: ``SynthConfig(index_base=0)`` used to come back as 1, ``num_distractors=0`` as 3),
and a zero that is invalid is rejected instead of silently becoming the default."""

from __future__ import annotations

import json

import pytest
from google.protobuf.json_format import MessageToDict, MessageToJson, Parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mvp.common.sample import Label, label_json
from mvp.common.synth_config import SynthConfig
from mvp.v1 import reward_pb2, sample_pb2

pytestmark = pytest.mark.unit

PROTO_FIELDS = {f.name for f in sample_pb2.SynthesisConfig.DESCRIPTOR.fields}


@st.composite
def synth_configs(draw) -> SynthConfig:
    num_frames = draw(st.integers(3, 64))
    allow_edge = draw(st.booleans())
    k_max = min(16, num_frames - (0 if allow_edge else 2))
    return SynthConfig(
        fps=draw(st.floats(0.05, 30, allow_nan=False)),
        num_frames=num_frames,
        num_masked=draw(st.integers(1, max(1, k_max))),
        num_distractors=draw(st.integers(0, 32)),
        kappa=draw(st.floats(-0.99, 1.0, allow_nan=False)),
        image_size=draw(st.integers(32, 2048)),
        image_format=draw(st.sampled_from(["jpeg", "webp"])),
        image_quality=draw(st.integers(1, 100)),
        seed=draw(st.integers(0, 2**63 - 1)),
        embedder=draw(st.sampled_from(["thumb", "dhash"])),
        samples_per_video=draw(st.integers(1, 64)),
        allow_edge_mask=allow_edge,
        neighbourhood_s=draw(st.floats(0.01, 600, allow_nan=False)),
        distractor_sampling=draw(st.sampled_from(["nearest", "uniform"])),
        max_distractor_similarity=draw(st.floats(-0.99, 1.0, allow_nan=False)),
        index_base=draw(st.integers(0, 1)),
        max_pixels=draw(st.integers(1, 2**40)),
        max_decoded_frames=draw(st.integers(1, 2**31 - 1)),
    )


def test_every_synth_config_field_crosses_the_wire() -> None:
    """The digest covers every field, so every field must reach the server (max_pixels and
    max_decoded_frames used to be dropped by to_proto while digest() counted them)."""
    assert set(SynthConfig.model_fields) == PROTO_FIELDS
    config = SynthConfig(max_pixels=640 * 360, max_decoded_frames=120)
    wire = sample_pb2.SynthesisConfig.FromString(config.to_proto().SerializeToString())
    assert SynthConfig.from_proto(wire).digest() == config.digest()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(synth_configs())
def test_synth_config_survives_proto_and_json(config: SynthConfig) -> None:
    message = config.to_proto()
    wire = sample_pb2.SynthesisConfig.FromString(message.SerializeToString())
    assert SynthConfig.from_proto(wire) == config
    via_json = Parse(MessageToJson(wire), sample_pb2.SynthesisConfig())
    assert SynthConfig.from_proto(via_json) == config
    assert SynthConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("field", "value"), [("index_base", 0), ("num_distractors", 0), ("seed", 0), ("allow_edge_mask", False)]
)
def test_zero_values_are_kept(field: str, value: object) -> None:
    base = SynthConfig(index_base=1, num_distractors=3, seed=5, allow_edge_mask=True, num_frames=8, num_masked=3)
    message = sample_pb2.SynthesisConfig(**{field: value})
    assert getattr(SynthConfig.from_proto(message, base=base), field) == value


@pytest.mark.parametrize(("field", "value"), [("num_frames", 0), ("fps", 0.0), ("image_size", 0)])
def test_invalid_zero_values_are_rejected_not_defaulted(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        SynthConfig.from_proto(sample_pb2.SynthesisConfig(**{field: value}))


def test_unset_fields_take_the_base() -> None:
    base = SynthConfig(num_frames=12, num_masked=4)
    assert SynthConfig.from_proto(sample_pb2.SynthesisConfig(), base=base) == base


@st.composite
def labels(draw) -> Label:
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, n))
    base = draw(st.integers(0, 1))
    answer = draw(st.permutations(range(base, base + n)))[:k]
    times = draw(st.one_of(st.just(()), st.lists(st.floats(0, 1e4, allow_nan=False), min_size=n, max_size=n)))
    gap = sorted(draw(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=2)))
    return Label(tuple(answer), n, base, tuple(times), gap[0], gap[1])


def _label_proto(label: Label) -> sample_pb2.Label:
    return sample_pb2.Label(
        answer=list(label.answer),
        num_candidates=label.num_candidates,
        index_base=label.index_base,
        candidate_times_s=list(label.candidate_times_s),
        gap_start_s=label.gap_start_s,
        gap_end_s=label.gap_end_s,
    )


@settings(max_examples=200, deadline=None)
@given(labels())
def test_label_survives_proto_and_json(label: Label) -> None:
    wire = sample_pb2.Label.FromString(_label_proto(label).SerializeToString())
    assert wire.HasField("index_base") and wire.index_base == label.index_base
    row = {"label": MessageToDict(wire, preserving_proto_field_name=True)}
    assert Label.from_json(label_json(row)) == label


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "format_weight": st.floats(0, 1, allow_nan=False),
            "soft": st.booleans(),
            "soft_tau_s": st.floats(0.01, 100, allow_nan=False),
            "soft_max_credit": st.floats(0, 1, allow_nan=False),
        },
    )
)
def test_reward_config_keeps_what_was_set(values: dict) -> None:
    wire = reward_pb2.RewardConfig.FromString(reward_pb2.RewardConfig(**values).SerializeToString())
    back = MessageToDict(wire, preserving_proto_field_name=True)
    assert back == values
    assert json.loads(MessageToJson(wire, preserving_proto_field_name=True)) == values
