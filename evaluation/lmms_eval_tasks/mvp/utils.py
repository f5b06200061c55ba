"""LMMs-Eval task functions of MVP-Train's local tasks (docs/evaluation.md). The docs are JSON lines
that `evaluation/lmms_eval_data.py` writes: ``question`` (text with one ``<image>`` per frame, in
order), ``images`` (PNG paths), ``letters`` (the options) and ``answer`` (the right letter).

This file is loaded by LMMs-Eval (``--include_path evaluation/lmms_eval_tasks``), in LMMs-Eval's
own venv: it imports nothing of MVP-Train."""

from __future__ import annotations

import re

from PIL import Image

POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def _images(doc: dict) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in doc["images"]]


def doc_to_visual(doc: dict) -> list[Image.Image]:
    return _images(doc)


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question without its image slots (for LMMs-Eval's simple models, which put every image
    before the text)."""
    return doc["question"].replace("<image>", "") + POST_PROMPT


def doc_to_messages(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> list[dict]:
    """One user turn with each image at its ``<image>`` slot (the chat models' interleaved form)."""
    images = iter(_images(doc))
    parts: list[dict] = []
    for i, chunk in enumerate(doc["question"].split("<image>")):
        if i:
            parts.append({"type": "image", "url": next(images)})
        if chunk:
            parts.append({"type": "text", "text": chunk})
    parts.append({"type": "text", "text": POST_PROMPT})
    return [{"role": "user", "content": parts}]


def parse_letter(text: str, letters: list[str]) -> str | None:
    """The first option letter the answer names (``B``, ``B.``, ``(B)``, ``The answer is B``)."""
    for found in re.finditer(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", text or ""):
        if found.group(1) in letters:
            return found.group(1)
    return None


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    choice = parse_letter(results[0], doc["letters"])
    return {"accuracy": float(choice == doc["answer"]), "answered": float(choice is not None)}
