"""The fast test fixture: a tiny, randomly initialised Qwen2.5-VL built offline (the product's model is
mvp-smol, ``mvp.model.smol``; ``--model tiny`` picks this one).

A real Qwen2.5-VL architecture (vision tower with 2x2 patch merging + a Qwen2 language model with
M-RoPE), a byte-level BPE tokenizer trained here on MVP-style text with Qwen's special tokens, the
Qwen chat template and the Qwen2-VL image processor, all saved with ``save_pretrained`` so
transformers (and vLLM) load the folder like any checkpoint. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mvp.model.cache import build_once

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen's own tags are plain text, but as single tokens they make the answer format learnable.
EXTRA_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small enough for CPU training, large enough to learn the task (about 1.5M parameters).
TINY = {
    "vocab_size": 1024,
    "text": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "vision": {"depth": 2, "hidden_size": 96, "intermediate_size": 192, "num_heads": 2},
    "image_pixels": 112 * 112,  # a 16:9 frame becomes 84x140 px: 6x10 patches -> 15 tokens after 2x2 merging
}
# Optional spec key "patch_size": the vision patch side in pixels (default Qwen's 14); e.g. 28 with
# image_pixels 56*56 gives one visual token per frame.
DEFAULT_PATCH_SIZE = 14


def patch_size(spec: dict) -> int:
    return spec.get("patch_size", DEFAULT_PATCH_SIZE)


def _training_text() -> list[str]:
    """Text the tokenizer is trained on: the prompts, answers and reasoning words MVP uses."""
    from mvp.common.sample import render_prompt

    lines = []
    for k in range(1, 5):
        for before in range(1, 4):
            for after in range(1, 4):
                for pool in range(k, k + 5):
                    lines.append(render_prompt(before, after, k, pool, 1))
    for a in range(1, 13):
        for b in range(1, 13):
            lines.append(f"<think>frame {a} comes before {b}</think><answer>{a}, {b}</answer>")
    lines += ["The ball moves left. The square grows. The circle is occluded. The camera pans right."] * 5
    return lines


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + EXTRA_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:] + EXTRA_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_image_processor(image_pixels: int, patch: int = DEFAULT_PATCH_SIZE):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=image_pixels, max_pixels=image_pixels, patch_size=patch)


def build_model(tokenizer, spec: dict, seed: int = 0):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text, vision = spec["text"], spec["vision"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]  # temporal, height, width: sums to head_dim/2
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            **vision,
            "out_hidden_size": text["hidden_size"],
            "patch_size": patch_size(spec),
            "fullatt_block_indexes": [vision["depth"] - 1],
            "window_size": 4 * patch_size(spec),  # 2x2 merged tokens per window
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model


def spec_digest(spec: dict, seed: int) -> str:
    return hashlib.sha256(json.dumps({"spec": spec, "seed": seed, "v": 1}, sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    return Path(os.environ.get("MVP_CACHE_DIR", Path.home() / ".cache" / "mvp"))


def ensure_tiny_model(path: Path | None = None, seed: int = 0, spec: dict | None = None) -> Path:
    """Builds the tiny model into ``path`` (default: the cache) unless it is already there."""
    spec = spec or TINY
    path = path or default_cache_dir() / f"tiny-qwen2.5-vl-{spec_digest(spec, seed)}"

    def write(tmp: Path) -> None:
        tokenizer = build_tokenizer(spec["vocab_size"])
        image_processor = build_image_processor(spec["image_pixels"], patch_size(spec))
        model = build_model(tokenizer, spec, seed)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE)

    return build_once(path, write, model_folder_complete)


def model_folder_complete(path: Path) -> bool:
    """Whether ``path`` holds a saved model (its config and weights)."""
    return (path / "config.json").exists() and (path / "model.safetensors").exists()
