"""A Qwen2.5-VL-family policy on CPU or GPU: prompt encoding (chat template + image tokens),
group sampling with ``generate``, and per-token log-probabilities for the GRPO update.

MVP prompts carry ``<image>`` placeholders (one per frame, in the order of the images list); they
become Qwen's ``<|vision_start|><|image_pad|>…<|vision_end|>`` spans with one pad token per merged
vision patch, exactly as Qwen2.5-VL's processor does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor  # (patches, dim)
    image_grid_thw: torch.Tensor  # (images, 3)


def prompt_messages(prompt: str) -> list[dict]:
    """An MVP prompt as one chat user turn: text and image parts in order."""
    parts: list[dict] = []
    for i, chunk in enumerate(prompt.split(IMAGE_PLACEHOLDER)):
        if i > 0:
            parts.append({"type": "image"})
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return [{"role": "user", "content": parts}]


class Policy:
    """Model + tokenizer + image processor of one checkpoint folder."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        self.path = Path(path)
        self._bind(
            AutoModelForImageTextToText.from_pretrained(self.path, dtype=dtype).to(device),
            AutoTokenizer.from_pretrained(self.path),
            _image_processor(self.path),
            device,
        )

    @classmethod
    def from_parts(cls, model, tokenizer, image_processor, device: str = "cpu") -> Policy:
        """A policy over a model built in memory (e.g. during mvp-smol's alignment)."""
        policy = cls.__new__(cls)
        policy.path = Path(getattr(model, "name_or_path", "") or ".")
        policy._bind(model.to(device), tokenizer, image_processor, device)
        return policy

    def _bind(self, model, tokenizer, image_processor, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.device = device
        cfg = self.model.config
        self.image_token_id = cfg.image_token_id
        self.merge = self.image_processor.merge_size
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        # A completion must never contain vision or turn-structure tokens: the forward pass would
        # look for images that do not exist.
        special = [
            "<|image_pad|>",
            "<|video_pad|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|im_start|>",
            "<|endoftext|>",
        ]
        self.suppress_ids = sorted({i for i in self.tokenizer.convert_tokens_to_ids(special) if i is not None})

    def encode(self, prompt: str, images: list[Image.Image]) -> Encoded:
        if prompt.count(IMAGE_PLACEHOLDER) != len(images):
            raise ValueError(f"prompt has {prompt.count(IMAGE_PLACEHOLDER)} <image> slots for {len(images)} images")
        return self.encode_messages(prompt_messages(prompt), images)

    def encode_messages(self, messages: list[dict], images: list[Image.Image]) -> Encoded:
        """Chat messages whose content parts include ``{"type": "image"}`` (one per image, in
        order), with the generation prompt for the assistant's turn appended."""
        if not images:
            ip = self.image_processor
            dim = 3 * ip.temporal_patch_size * ip.patch_size**2
            return self.encode_pixels(messages, torch.zeros(0, dim), torch.zeros(0, 3, dtype=torch.long))
        vision = self.image_processor(images=images, return_tensors="pt")
        return self.encode_pixels(messages, vision["pixel_values"], vision["image_grid_thw"])

    def encode_pixels(self, messages: list[dict], pixel_values: torch.Tensor, grid: torch.Tensor) -> Encoded:
        """``encode_messages`` for images already run through the image processor (``pixel_values``
        and ``image_grid_thw`` of all images, in order), e.g. frames processed once and reused."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pads = iter(int(g.prod()) // (self.merge**2) for g in grid)
        text = "".join(
            piece if i == 0 else "<|image_pad|>" * next(pads) + piece
            for i, piece in enumerate(text.split("<|image_pad|>"))
        )
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return Encoded(ids, pixel_values, grid)

    @torch.no_grad()
    def sample(
        self, enc: Encoded, n: int, max_new_tokens: int, temperature: float, greedy: bool = False
    ) -> torch.Tensor:
        """``n`` completions of one prompt; returns (n, T) token ids, padded with pad_id after eos."""
        ids = enc.input_ids.unsqueeze(0).repeat(n, 1).to(self.device)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=enc.pixel_values.repeat(n, 1).to(self.device),
            image_grid_thw=enc.image_grid_thw.repeat(n, 1).to(self.device),
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            temperature=temperature if not greedy else None,
            top_p=1.0 if not greedy else None,
            top_k=0 if not greedy else None,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            suppress_tokens=self.suppress_ids,
        )
        return out[:, ids.shape[1] :].cpu()

    def completion_mask(self, completions: torch.Tensor) -> torch.Tensor:
        """1 for generated tokens up to and including the first eos, 0 for padding after it."""
        is_eos = completions == self.eos_id
        after = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
        return (after == 0).float()

    def decode(self, completions: torch.Tensor) -> list[str]:
        mask = self.completion_mask(completions)
        return [
            self.tokenizer.decode(row[: int(m.sum())].tolist(), skip_special_tokens=False).replace("<|im_end|>", "")
            for row, m in zip(completions, mask, strict=True)
        ]

    def token_logprobs(
        self, enc: Encoded, completions: torch.Tensor, model: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (and entropies) of ``completions`` (n, T) given the prompt: (n, T) each."""
        model = model or self.model
        n = completions.shape[0]
        prompt = enc.input_ids.unsqueeze(0).repeat(n, 1)
        ids = torch.cat([prompt, completions], dim=1).to(self.device)
        logits = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=enc.pixel_values.repeat(n, 1).to(self.device),
            image_grid_thw=enc.image_grid_thw.repeat(n, 1).to(self.device),
        ).logits
        logits = logits[:, prompt.shape[1] - 1 : -1].float()
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, completions.to(self.device).unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy

    def save(self, folder: Path) -> None:
        """A Hugging Face checkpoint folder (safetensors + tokenizer + image processor + template)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        template = self.path / "chat_template.jinja"
        if template.exists():
            (folder / "chat_template.jinja").write_text(template.read_text())


def _image_processor(path: Path):
    """Qwen2-VL's image processor; the PIL implementation where torchvision is unavailable."""
    config = json.loads((path / "preprocessor_config.json").read_text())
    try:
        import torchvision  # noqa: F401
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(path)
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        keys = (
            "min_pixels",
            "max_pixels",
            "patch_size",
            "merge_size",
            "temporal_patch_size",
            "image_mean",
            "image_std",
        )
        size = config.get("size", {})
        kwargs = {k: config[k] for k in keys if k in config}
        if "shortest_edge" in size:
            kwargs.setdefault("min_pixels", size["shortest_edge"])
            kwargs.setdefault("max_pixels", size["longest_edge"])
        return Qwen2VLImageProcessorPil(**kwargs)
