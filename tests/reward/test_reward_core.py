"""The reward library: worked examples, ranking properties, and never-raise on any text."""

from __future__ import annotations

import contextlib
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvp.reward import core
from mvp.reward.core import FailureReason, InvalidLabelError, Label, RewardConfig, correct_completion, score

pytestmark = pytest.mark.unit

CFG = RewardConfig()
LABEL = Label(answer=(3, 1, 5, 2), num_candidates=8)


def r(text: str, label: Label = LABEL, config: RewardConfig = CFG) -> core.RewardResult:
    return score(text, label, config, slots=True)


def test_correct_answer_earns_maximum() -> None:
    result = r(correct_completion(LABEL))
    assert result.reward == pytest.approx(1.0)
    assert result.components() == {"format": 1.0, "selection": 1.0, "ordering": 1.0, "exact": 1.0, "soft": 0.0}
    assert r("<think>the ball rolls right, so 3 first</think>\n<answer>3, 1, 5, 2</answer>").reward == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>3, 1, 2, 5</answer>", 0.1 + 0.3 + 0.3 * 5 / 6),  # last two swapped
        ("<answer>2, 5, 1, 3</answer>", 0.1 + 0.3),  # right frames, reversed
        ("<answer>3, 1, 5, 7</answer>", 0.1 + 0.3 * 0.75 + 0.3 * 3 / 6),  # one distractor, order kept
        ("<answer>4, 6, 7, 8</answer>", 0.1),  # well formed, all distractors
    ],
)
def test_worked_examples_from_docs(text: str, expected: float) -> None:
    assert r(text).reward == pytest.approx(expected)


def test_partial_answers_are_ranked() -> None:
    exact = r("<answer>3, 1, 5, 2</answer>").reward
    one_swap = r("<answer>1, 3, 5, 2</answer>").reward
    reversed_ = r("<answer>2, 5, 1, 3</answer>").reward
    three_right = r("<answer>3, 1, 5, 8</answer>").reward
    none_right = r("<answer>4, 6, 7, 8</answer>").reward
    malformed = r("3, 1, 5, 2").reward
    assert exact > one_swap > reversed_ > none_right > malformed == 0.0
    assert one_swap > three_right > none_right


def test_ordering_is_finer_than_visual_jigsaw() -> None:
    """Visual Jigsaw credits correct positions; two answers with no frame in its right position
    but very different pairwise order must still be distinguished here."""
    label = Label(answer=(1, 2, 3, 4), num_candidates=6)
    shifted = r("<answer>4, 1, 2, 3</answer>", label)  # 0 correct positions, 3/6 pairs right
    reversed_ = r("<answer>4, 3, 2, 1</answer>", label)  # 0 correct positions, 0/6 pairs right
    assert shifted.reward > reversed_.reward


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", FailureReason.NO_ANSWER_TAG),
        ("3, 1, 5, 2", FailureReason.NO_ANSWER_TAG),
        ("<answer>3, 1, 5, 2", FailureReason.NO_ANSWER_TAG),
        ("<answer></answer>", FailureReason.EMPTY_ANSWER),
        ("<answer>[ ]</answer>", FailureReason.EMPTY_ANSWER),
        ("<answer>3, one, 5, 2</answer>", FailureReason.NOT_AN_INTEGER),
        ("<answer>3, 1, 5</answer>", FailureReason.WRONG_COUNT),
        ("<answer>3, 1, 5, 2, 4</answer>", FailureReason.WRONG_COUNT),
        ("<answer>3, 1, 5, 9</answer>", FailureReason.OUT_OF_RANGE),
        ("<answer>3, 1, 5, 0</answer>", FailureReason.OUT_OF_RANGE),
        ("<answer>3, 1, 5, -2</answer>", FailureReason.OUT_OF_RANGE),
        ("<answer>3, 1, 5, " + "9" * 5000 + "</answer>", FailureReason.OUT_OF_RANGE),
        ("<answer>3, 3, 5, 2</answer>", FailureReason.DUPLICATE_INDEX),
        ("<think>maybe <answer>3, 1, 5, 2</answer>", FailureReason.ANSWER_INSIDE_THINK),
        ("<answer>3, 1, 5, 2.0</answer>", FailureReason.NOT_AN_INTEGER),
        ("<answer>３, 1, 5, 2</answer>", FailureReason.NOT_AN_INTEGER),  # full-width digit
    ],
)
def test_parse_failures_have_named_reasons(text: str, reason: str) -> None:
    result = r(text)
    assert result.failure_reason == reason
    assert result.failure_detail
    assert result.reward == 0.0
    assert all(v == 0.0 for v in result.components().values())


@pytest.mark.parametrize(
    "text",
    [
        "<answer>3,1,5,2</answer>",
        "<answer> [3, 1, 5, 2] </answer>",
        "<answer>(3 1 5 2)</answer>",
        "<ANSWER>3 -> 1 -> 5 -> 2</Answer>",
        "<answer>3; 1; 5; 2</answer>",
        "<answer>\n3,\n1,\n5,\n2\n</answer>",
        "prompt says <answer>i1, i2, i3, i4</answer> ... <answer>3, 1, 5, 2</answer>",
        "<answer>9, 9</answer> changed my mind <answer>3, 1, 5, 2</answer>",
        "<answer><answer>3, 1, 5, 2</answer></answer>",
    ],
)
def test_lenient_where_intent_is_unambiguous(text: str) -> None:
    assert r(text).reward == 1.0


@pytest.mark.parametrize(
    ("text", "in_place", "selected"),
    [
        ("<answer>3, 1, 5, 2</answer>", [True] * 4, [True] * 4),
        ("<answer>3, 1, 2, 5</answer>", [True, True, False, False], [True] * 4),
        ("<answer>3, 1, 5, 7</answer>", [True, True, True, False], [True, True, True, False]),
        ("<answer>2, 5, 1, 3</answer>", [False] * 4, [True] * 4),
        ("<answer>4, 6, 7, 8</answer>", [False] * 4, [False] * 4),
    ],
)
def test_each_answered_index_gets_its_own_credit(text: str, in_place: list[bool], selected: list[bool]) -> None:
    result = r(text)
    assert [s.in_place for s in result.slots] == in_place
    assert [s.selected for s in result.slots] == selected
    assert [text[s.start : s.end] for s in result.slots] == [str(i) for i in result.parsed_answer]
    for slot in result.slots:  # a K = 1 answer naming this index, without format, over K
        assert slot.reward == pytest.approx((0.3 * slot.selected + 0.6 * slot.in_place) / 4)
    if all(in_place):  # a fully right answer's slots add up to its reward minus format
        assert sum(s.reward for s in result.slots) == pytest.approx(result.reward - CFG.format_weight)


def test_slots_follow_the_last_answer_block_and_its_brackets() -> None:
    text = "<answer>9, 9</answer> no: <answer> [ 3 ->1->5 -> 2 ] </answer>"
    spans = [(s.start, s.end) for s in r(text).slots]
    assert [text[a:b] for a, b in spans] == ["3", "1", "5", "2"]
    assert spans[0][0] > text.index("no:")
    assert r("<answer>3, 3, 5, 2</answer>").slots == []  # a failed parse has no slots
    assert score(text, LABEL, CFG).slots == []  # nor a result nobody asked them for


def test_slot_soft_credit_for_a_gap_adjacent_distractor() -> None:
    label = Label(
        answer=(1, 2), num_candidates=4, candidate_times_s=(10.0, 11.0, 9.0, 30.0), gap_start_s=10.0, gap_end_s=11.0
    )
    soft = RewardConfig(soft=True)
    near, far = r("<answer>1, 3</answer>", label, soft).slots[1], r("<answer>1, 4</answer>", label, soft).slots[1]
    assert not near.selected and not far.selected
    assert 0.0 < near.reward < 0.3 / 2
    assert far.reward < near.reward
    assert r("<answer>1, 3</answer>", label).slots[1].reward == 0.0  # soft credit off by default


def test_zero_based_labels() -> None:
    label = Label(answer=(2, 0, 1), num_candidates=5, index_base=0)
    assert r("<answer>2, 0, 1</answer>", label).reward == 1.0
    assert r("<answer>3, 1, 2</answer>", label).exact == 0.0
    assert r("<answer>2, 0, 5</answer>", label).failure_reason == FailureReason.OUT_OF_RANGE


def test_k_equals_one() -> None:
    label = Label(answer=(4,), num_candidates=5)
    assert r("<answer>4</answer>", label).reward == 1.0
    assert r("<answer>2</answer>", label).reward == pytest.approx(0.1)


def test_soft_credit_for_gap_adjacent_distractor() -> None:
    label = Label(
        answer=(1, 2),
        num_candidates=4,
        candidate_times_s=(10.0, 11.0, 9.0, 30.0),
        gap_start_s=10.0,
        gap_end_s=11.0,
    )
    soft = RewardConfig(soft=True)
    near = r("<answer>1, 3</answer>", label, soft)  # 9.0 is 1 s before the gap
    far = r("<answer>1, 4</answer>", label, soft)  # 30.0 is 19 s after it
    hard_near = r("<answer>1, 3</answer>", label)
    assert near.soft > far.soft > 0
    assert near.reward > far.reward
    assert hard_near.soft == 0.0
    assert near.reward > hard_near.reward
    assert r("<answer>1, 2</answer>", label, soft).reward == pytest.approx(1.0)


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        RewardConfig(format_weight=0.5)
    assert RewardConfig(format_weight=0.0, selection_weight=0.0, ordering_weight=0.0, exact_weight=1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"answer": [1]}', "num_candidates"),
        ('{"answer": [], "num_candidates": 3}', "empty"),
        ('{"answer": [1, 1], "num_candidates": 3}', "repeats"),
        ('{"answer": [4], "num_candidates": 3}', "outside"),
        ('{"answer": [1, 2], "num_candidates": 1}', "smaller"),
        ('{"answer": ["1"], "num_candidates": 3}', "integers"),
        ('{"answer": [true], "num_candidates": 3}', "integers"),
        ('{"answer": [1], "num_candidates": 3, "index_base": 2}', "index_base"),
        ('{"answer": [1], "num_candidates": 2, "candidate_times_s": [1.0]}', "candidate_times_s"),
    ],
)
def test_invalid_labels_raise(text: str, message: str) -> None:
    with pytest.raises(InvalidLabelError, match=message):
        Label.from_json(text)


labels = (
    st.integers(1, 8)
    .flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 16), st.sampled_from([0, 1])))
    .flatmap(
        lambda t: st.tuples(
            st.permutations(list(range(t[2], t[2] + t[1]))).map(lambda p, k=t[0]: tuple(p[:k])),
            st.just(t[1]),
            st.just(t[2]),
        )
    )
    .map(lambda t: Label(answer=t[0], num_candidates=t[1], index_base=t[2]))
)

completion_text = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda a, b, c: f"{a}<answer>{b}</answer>{c}", st.text(max_size=50), st.text(max_size=50), st.text(max_size=20)
    ),
    st.builds(
        lambda nums, sep: "<answer>" + sep.join(str(n) for n in nums) + "</answer>",
        st.lists(st.integers(-(10**12), 10**12), max_size=10),
        st.sampled_from([",", ", ", " ", ";", "->", ",,", ""]),
    ),
    st.builds(lambda t: "<think>" + t + "</think><answer>", st.text(max_size=30)),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=completion_text, label=labels)
def test_never_raises_and_stays_in_range(text: str, label: Label) -> None:
    result = score(text, label, CFG, slots=True)
    plain = score(text, label, CFG)  # without spans the parser takes its faster path: same verdict
    assert (plain.reward, plain.failure_reason, plain.parsed_answer) == (
        result.reward,
        result.failure_reason,
        result.parsed_answer,
    )
    assert 0.0 <= result.reward <= 1.0
    for value in result.components().values():
        assert 0.0 <= value <= 1.0
    if result.failure_reason:
        assert result.failure_reason in FailureReason.ALL
        assert result.reward == 0.0
        assert result.slots == []
    else:
        assert len(result.parsed_answer) == len(label.answer)
        # every slot points at the text of its own index, and its credit stays within the reward
        assert [int(text[s.start : s.end]) for s in result.slots] == result.parsed_answer
        assert all(0.0 <= s.reward <= 0.9 / len(label.answer) + 1e-12 for s in result.slots)


@settings(max_examples=200)
@given(label=labels, data=st.data())
def test_any_permutation_scores_by_pairwise_order(label: Label, data: st.DataObject) -> None:
    """For answers that pick exactly the positives, ordering equals the fraction of pairs kept."""
    perm = data.draw(st.permutations(list(label.answer)))
    result = score("<answer>" + ", ".join(map(str, perm)) + "</answer>", label, CFG)
    k = len(label.answer)
    rank = {a: i for i, a in enumerate(label.answer)}
    pairs = list(itertools.combinations([rank[a] for a in perm], 2))
    expected = 1.0 if k == 1 else sum(i < j for i, j in pairs) / len(pairs)
    assert result.selection == 1.0
    assert result.ordering == pytest.approx(expected)
    assert result.exact == (1.0 if tuple(perm) == label.answer else 0.0)


@settings(max_examples=200)
@given(label=labels)
def test_canonical_completion_is_maximal(label: Label) -> None:
    assert score(correct_completion(label), label, CFG).reward == pytest.approx(1.0)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    )
)
def test_label_parser_only_raises_invalid_label(data: object) -> None:
    with contextlib.suppress(InvalidLabelError):
        Label.from_json(json.dumps(data))


def test_megabyte_completion() -> None:
    text = "x" * (1 << 20) + "<answer>3, 1, 5, 2</answer>"
    assert r(text).reward == 1.0
    assert r("<answer>" * 100_000).failure_reason == FailureReason.NO_ANSWER_TAG


@settings(max_examples=300, deadline=None)
@given(st.permutations(list(range(12))).flatmap(lambda p: st.integers(0, 12).map(lambda n: p[:n])))
def test_concordant_pairs_equals_the_pairwise_count(ranks: list[int]) -> None:
    from mvp.reward.core import concordant_pairs

    slow = sum(1 for i in range(len(ranks)) for j in range(i + 1, len(ranks)) if ranks[i] < ranks[j])
    assert concordant_pairs(ranks) == slow


def test_label_cache_is_bounded_in_bytes() -> None:
    """40 distinct large labels no longer stay in memory (#15: RSS grew 341 -> 435 MiB)."""
    import json

    from mvp.reward.core import LabelCache

    cache = LabelCache(max_bytes=256 << 10, max_item_bytes=64 << 10)
    for i in range(40):
        text = json.dumps({"answer": [1, 2], "num_candidates": 3, "pad": "x" * (30 << 10) + str(i)})
        assert cache.get(text).answer == (1, 2)
        assert cache.bytes <= cache.max_bytes
    huge = json.dumps({"answer": [1], "num_candidates": 2, "pad": "y" * (200 << 10)})
    cache.get(huge)
    assert huge not in cache._items  # too large to keep: parsed, never stored
    with pytest.raises(InvalidLabelError, match="exceeds"):  # too large to parse at all (#30)
        cache.get(json.dumps({"answer": [1], "num_candidates": 2, "pad": "y" * (1 << 20)}))
    small = json.dumps({"answer": [2, 1], "num_candidates": 2})
    assert cache.get(small) is cache.get(small)  # the common case still hits
