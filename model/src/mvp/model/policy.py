"""A Qwen2.5-VL-family policy on CPU or GPU: prompt encoding (chat template + image tokens),
group sampling, and per-token log-probabilities for the GRPO update.

MVP prompts carry ``<image>`` placeholders (one per frame, in the order of the images list); they
become Qwen's ``<|vision_start|><|image_pad|>…<|vision_end|>`` spans with one pad token per merged
vision patch, exactly as Qwen2.5-VL's processor does.

Positions are Qwen2.5-VL's M-RoPE (temporal, height, width per image token; text continues after
the largest), computed once per prompt as the processor + ``get_rope_index`` do, so training,
evaluation, the transformers server and vLLM all see the same positions.

A group of completions shares its prompt: the prompt (vision tower included) is run once, its
KV cache is repeated over the group, and only the completions are run per member, both when
sampling (a KV-cached decode loop) and when scoring log-probabilities for the update. The
gradient flows through the shared prompt's cache, so the result equals running every member's
full sequence (up to float rounding).
"""

from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from mvp.common.sample import IMAGE_PLACEHOLDER, prompt_messages


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor  # (patches, dim)
    image_grid_thw: torch.Tensor  # (images, 3)
    positions: torch.Tensor  # (3, L) M-RoPE position ids of the prompt

    @property
    def next_position(self) -> int:
        """The (text) position of the first token after the prompt."""
        return int(self.positions.max()) + 1 if self.positions.numel() else 0


def hf_bars_only_on_a_terminal() -> None:
    """transformers' own bars (loading and writing weights) only on a TTY; in a log they would be
    walls of carriage returns."""
    from transformers.utils import logging as hf_logging

    from mvp.common.progress import is_tty

    if is_tty():
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()


class Policy:
    """Model + tokenizer + image processor of one checkpoint folder."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        hf_bars_only_on_a_terminal()
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

    def copy(self) -> Policy:
        """A policy with its own copy of the weights (training it leaves this one as it was); the
        tokenizer and image processor are shared, the checkpoint folder it came from is kept."""
        twin = Policy.from_parts(copy.deepcopy(self.model), self.tokenizer, self.image_processor, self.device)
        twin.path = self.path
        return twin

    def _bind(self, model, tokenizer, image_processor, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.device = device
        self.share_prompt = True
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
        # transformers 5.24 renamed the forward's ``past_key_values`` to ``cache``.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def token_types(self, ids: torch.Tensor) -> torch.Tensor:
        """Qwen's ``mm_token_type_ids``: 1 for image tokens, 0 for text (any leading shape)."""
        return (ids == self.image_token_id).int()

    def positions(self, ids: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """M-RoPE position ids (3, L) of one prompt's token ids (L,)."""
        pos, _ = self.model.model.get_rope_index(
            ids.unsqueeze(0), self.token_types(ids.unsqueeze(0)), image_grid_thw=grid if len(grid) else None
        )
        return pos[:, 0]

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
        return Encoded(ids, pixel_values, grid, self.positions(ids, grid))

    def prefill(self, enc: Encoded | list[Encoded], n: int, model: torch.nn.Module | None = None):
        """Runs the prompt once; returns the logits of its last position (n, V) and its KV cache
        repeated over ``n`` group members (differentiable when grad is enabled). With
        ``share_prompt`` off, every member runs the prompt itself (the reference the GRPO
        benchmark compares against).

        ``enc`` may also be one prompt per member that differ only in their images (a
        permutation-balanced group: the same text, the candidates in another order): the part
        before the first image that differs runs once, the rest once per distinct member prompt
        (members given the same ``Encoded`` object share its rows)."""
        model = model or self.model
        if isinstance(enc, list):
            if len(enc) != n:
                raise ValueError(f"{len(enc)} member prompts for a group of {n}")
            return self._prefill_members(enc, model)
        rows = 1 if self.share_prompt else n
        out = self._forward(model, enc, 0, len(enc.input_ids), rows, range(len(enc.image_grid_thw)))
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        if rows == 1:
            cache.batch_repeat_interleave(n)
        return out.logits[:, -1].expand(n, -1), cache

    def _forward(self, model, enc: Encoded, start: int, end: int, rows: int, images, cache=None, members=None):
        """The model on prompt tokens [start, end) for ``rows`` rows, with the pixel rows of ``images``
        (indices into the prompt's images) of ``enc``, or of each of ``members`` (one row each)."""
        sources = members or [enc] * rows
        kwargs = {}
        if len(images):
            kwargs = {
                "pixel_values": torch.cat([_image_rows(e, images) for e in sources]).to(self.device),
                "image_grid_thw": enc.image_grid_thw[list(images)].repeat(rows, 1).to(self.device),
            }
        if cache is not None:
            kwargs[self._cache_kw] = cache
        return model(
            input_ids=enc.input_ids[start:end].unsqueeze(0).repeat(rows, 1).to(self.device),
            position_ids=enc.positions[:, start:end].unsqueeze(1).repeat(1, rows, 1).to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )

    def _prefill_members(self, members: list[Encoded], model):
        first = members[0]
        if any(not torch.equal(m.input_ids, first.input_ids) for m in members):
            raise ValueError("a group's member prompts must share their text and image sizes")
        offsets = _image_offsets(first)
        shared = next(
            (i for i in range(len(offsets) - 1) if any(not _same_image(m, first, i) for m in members[1:])),
            len(offsets) - 1,
        )
        n = len(members)
        if shared == len(offsets) - 1:  # nothing differs: an ordinary shared prompt
            return self.prefill(first, n, model)
        # members that are one prompt (a group with fewer orders than members) run it once
        unique = {id(m): m for m in members}  # in first-seen order
        distinct = list(unique.values())
        row_of = {key: row for row, key in enumerate(unique)}
        index = [row_of[id(m)] for m in members]
        rows = len(distinct)
        # the prefix ends where the first differing image's pad tokens begin
        pads = (first.input_ids == self.image_token_id).nonzero().flatten()
        split = int(pads[offsets[shared] // (self.merge**2)])
        out = self._forward(model, first, 0, split, 1, range(shared))
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        cache.batch_repeat_interleave(rows)
        out = self._forward(
            model, first, split, len(first.input_ids), rows, range(shared, len(offsets) - 1), cache, distinct
        )
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        logits = out.logits[:, -1]
        if rows < n:
            select = torch.tensor(index, device=logits.device)
            cache.batch_select_indices(select)
            logits = logits[select]
        return logits, cache

    def extend(self, model: torch.nn.Module, ids: torch.Tensor, start: int, cache) -> torch.Tensor:
        """Logits (n, T, V) of ``ids`` (n, T) continuing a cached prompt at text position ``start``."""
        n, t = ids.shape
        pos = torch.arange(start, start + t, device=self.device).view(1, 1, t).expand(3, n, t)
        out = model(input_ids=ids.to(self.device), position_ids=pos, use_cache=True, **{self._cache_kw: cache})
        return out.logits

    @torch.no_grad()
    def sample(
        self,
        enc: Encoded | list[Encoded],
        n: int,
        max_new_tokens: int,
        temperature: float,
        greedy: bool = False,
        return_logprobs: bool = False,
    ):
        """``n`` completions of one prompt (or of ``n`` member prompts, see ``prefill``); returns (n, T)
        token ids, padded with pad_id after eos, and with ``return_logprobs`` also each sampled
        token's log-probability under the sampling distribution (the model's softmax at
        ``temperature``, as ``token_logprobs`` computes it; 0 at padding). The prompt runs once; the
        group decodes together over its KV cache. Vision and turn tokens are never sampled."""
        logits, cache = self.prefill(enc, n)
        out, logps = self._decode(logits, cache, _first(enc).next_position, max_new_tokens, temperature, greedy)
        return (out, logps) if return_logprobs else out

    @torch.no_grad()
    def sample_groups(
        self,
        encs: list[Encoded | list[Encoded]],
        n: int,
        max_new_tokens: int,
        temperature: float,
        greedy: bool = False,
        bf16_prefill: bool = False,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``sample(..., return_logprobs=True)`` for several groups of ``n``: each group's prompt runs
        on its own (under bf16 autocast with ``bf16_prefill``, its cache then cast back to fp32, so
        decoding and the log-probs stay fp32), and where all prompts have one length the groups then
        decode as one batch (one forward per token for all of them instead of one per group). A
        group's completions may carry padding columns past its own last token."""
        device = torch.device(self.device).type
        prefilled = []
        for enc in encs:
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16_prefill):
                logits, cache = self.prefill(enc, n)
            if bf16_prefill:
                logits = logits.float()
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys.float(), layer.values.float()
            prefilled.append((logits, cache))
        starts = {_first(e).next_position for e in encs}
        lengths = {c.get_seq_length() for _, c in prefilled}
        if len(starts) > 1 or len(lengths) > 1 or len(encs) == 1:
            return [
                self._decode(logits, cache, _first(e).next_position, max_new_tokens, temperature, greedy)
                for e, (logits, cache) in zip(encs, prefilled, strict=True)
            ]
        cache = prefilled[0][1]
        for i, layer in enumerate(cache.layers):
            layer.keys = torch.cat([c.layers[i].keys for _, c in prefilled])
            layer.values = torch.cat([c.layers[i].values for _, c in prefilled])
        logits = torch.cat([lg for lg, _ in prefilled])
        out, logps = self._decode(logits, cache, starts.pop(), max_new_tokens, temperature, greedy)
        return [(out[g * n : (g + 1) * n], logps[g * n : (g + 1) * n]) for g in range(len(encs))]

    def _decode(self, logits, cache, start: int, max_new_tokens: int, temperature: float, greedy: bool):
        """Token-by-token decoding of every row of ``cache`` from the prompt's last ``logits``."""
        rows = logits.shape[0]
        out = torch.full((rows, max_new_tokens), self.pad_id, dtype=torch.long)
        logps = torch.zeros(rows, max_new_tokens)
        done = torch.zeros(rows, dtype=torch.bool)
        for t in range(max_new_tokens):
            logits = logits.float().cpu() / (1.0 if greedy else temperature)
            logp_all = torch.log_softmax(logits, dim=-1)
            allowed = logits.clone()
            allowed[:, self.suppress_ids] = float("-inf")
            token = allowed.argmax(-1) if greedy else torch.multinomial(allowed.softmax(-1), 1).squeeze(1)
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            out[:, t] = token
            logps[:, t] = torch.where(done, 0.0, logp_all.gather(1, token.unsqueeze(1)).squeeze(1))
            done |= token == self.eos_id
            if bool(done.all()) or t == max_new_tokens - 1:
                out, logps = out[:, : t + 1], logps[:, : t + 1]
                break
            logits = self.extend(self.model, token.unsqueeze(1), start + t, cache)[:, -1]
        return out, logps

    def completion_mask(self, completions: torch.Tensor) -> torch.Tensor:
        """1 for generated tokens up to and including the first eos, 0 for padding after it."""
        is_eos = completions == self.eos_id
        after = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
        return (after == 0).float()

    def _text(self, ids: list[int]) -> str:
        """A completion's text as the reward sees it: special tokens kept, the end of turn dropped."""
        return self.tokenizer.decode(ids, skip_special_tokens=False).replace("<|im_end|>", "")

    def decode(self, completions: torch.Tensor) -> list[str]:
        lengths = self.completion_mask(completions).sum(1).int().tolist()
        return [self._text(row[:n]) for row, n in zip(completions.tolist(), lengths, strict=True)]

    def token_logprobs(
        self,
        enc: Encoded | list[Encoded],
        completions: torch.Tensor,
        model: torch.nn.Module | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (and entropies) of ``completions`` (n, T) given the prompt (or the
        members' prompts): (n, T) each, under the model's softmax at ``temperature`` (the rollouts'
        temperature, so the update scores the distribution that sampled them). The prompt runs once
        for the group (its cache repeated), the completions once each."""
        model = model or self.model
        n, t = completions.shape
        first, cache = self.prefill(enc, n, model)
        start = _first(enc).next_position
        logits = first.unsqueeze(1)
        if t > 1:
            logits = torch.cat([logits, self.extend(model, completions[:, :-1], start, cache)], dim=1)
        logits = logits.float() / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, completions.to(self.device).unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy

    def save(self, folder: Path) -> None:
        """A Hugging Face checkpoint folder (safetensors + tokenizer + image processor + template)."""
        hf_bars_only_on_a_terminal()
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        template = self.path / "chat_template.jinja"
        if template.exists():
            (folder / "chat_template.jinja").write_text(template.read_text())


def reorder_images(enc: Encoded, order: list[int]) -> Encoded:
    """``enc`` with its images shown in ``order`` (``order[i]``: the image now in slot i); all its images
    must share one patch grid, so the text and positions are unchanged and no processor runs again."""
    if len({tuple(g.tolist()) for g in enc.image_grid_thw}) > 1:
        raise ValueError("reorder_images needs images of one size")
    offsets = _image_offsets(enc)
    rows = [enc.pixel_values[offsets[i] : offsets[i + 1]] for i in order]
    return Encoded(enc.input_ids, torch.cat(rows), enc.image_grid_thw, enc.positions)


def append_tokens(enc: Encoded, ids: list[int]) -> Encoded:
    """``enc`` followed by the text tokens ``ids`` (e.g. the start of an answer, to read the model's
    distribution over what comes next from one prefill)."""
    extra = torch.tensor(ids, dtype=enc.input_ids.dtype)
    start = enc.next_position
    positions = torch.arange(start, start + len(ids)).view(1, -1).expand(3, -1)
    return Encoded(
        torch.cat([enc.input_ids, extra]),
        enc.pixel_values,
        enc.image_grid_thw,
        torch.cat([enc.positions, positions], 1),
    )


def _first(enc: Encoded | list[Encoded]) -> Encoded:
    return enc[0] if isinstance(enc, list) else enc


def _image_offsets(enc: Encoded) -> list[int]:
    """Where each image's rows start in ``enc.pixel_values`` (and where the last one ends)."""
    sizes = [int(g.prod()) for g in enc.image_grid_thw]
    return [sum(sizes[:i]) for i in range(len(sizes) + 1)]


def _image_rows(enc: Encoded, images) -> torch.Tensor:
    offsets = _image_offsets(enc)
    return torch.cat([enc.pixel_values[offsets[i] : offsets[i + 1]] for i in images])


def _same_image(a: Encoded, b: Encoded, i: int) -> bool:
    return torch.equal(_image_rows(a, [i]), _image_rows(b, [i]))


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
