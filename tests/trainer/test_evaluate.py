"""The one held-out evaluation: batched greedy answers equal one-by-one decoding, the answer
distribution behind the information diagnostic is the model's own, and the candidate-shuffle test
accounts every answered index (tiny Qwen2.5-VL on samples of a real corpus job)."""

from __future__ import annotations

import pytest
import torch

from tests.media import procedural_examples

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from mvp.model.policy import Policy
    from mvp.model.tiny import ensure_tiny_model

    examples = procedural_examples(tmp_path_factory.mktemp("evaluate"), seed=4500)
    policy = Policy(ensure_tiny_model())
    return policy, examples, [policy.encode(ex.prompt, ex.images) for ex in examples]


def test_batched_greedy_answers_equal_one_by_one(setup) -> None:
    from mvp.trainer.evaluate import greedy_answers

    policy, examples, encs = setup
    assert len(examples) == 4
    alone = [policy.decode(policy.sample(e, 1, 8, 1.0, greedy=True))[0] for e in encs]
    assert greedy_answers(policy, encs, 8) == alone


def test_first_index_distribution_is_the_models_next_token_distribution(setup) -> None:
    from mvp.trainer.evaluate import first_index_distributions

    policy, examples, encs = setup
    dists = first_index_distributions(policy, encs, examples)
    tok = policy.tokenizer
    for ex, enc, dist in zip(examples, encs, dists, strict=True):
        assert len(dist) == ex.num_candidates and abs(sum(dist) - 1) < 1e-5
        rows = torch.tensor([tok(f"<answer>{i}", add_special_tokens=False)["input_ids"] for i in range(1, 5)])
        with torch.no_grad():
            logp, _ = policy.token_logprobs(enc, rows)
        expected = torch.softmax(logp[:, -1], dim=0)  # the shared "<answer>" prefix cancels
        assert torch.allclose(torch.tensor(dist), expected, atol=1e-4)


def test_content_dependence_accounts_each_answered_index(setup) -> None:
    from mvp.trainer.evaluate import content_dependence

    policy, examples, encs = setup
    by_id = {ex.id: enc for ex, enc in zip(examples, encs, strict=True)}
    answers = ["<answer>1, 2</answer>", "<answer>3, 4</answer>", "no answer", "<answer>2, 1</answer>"]
    out = content_dependence(policy, examples, answers, lambda ex: by_id[ex.id], 8)
    assert out["shuffled_samples"] == 3  # the unparsed answer is not shuffled
    assert 0 <= out["follows_frame"] + out["follows_number"] <= 1  # an index cannot follow both
    assert 0 <= out["answer_information_nats"] <= out["answer_information_max_nats"] + 1e-9
    assert out["top_answer_share"] == 0.25
