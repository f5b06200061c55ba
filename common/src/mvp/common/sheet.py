"""Sample sheets: one PNG showing an MVP sample the way a person checks it.

Top row: the context frames in temporal order with the gap (K "?" slots) where it is. Bottom row:
the numbered candidate pool; positives get a green border and their position in the answer
(#1..#K), and, when a model answer is given, each chosen candidate gets a blue tag with the
position the model gave it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

GREEN, BLUE, GREY, WHITE = (40, 170, 70), (40, 110, 230), (90, 90, 90), (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def render_sheet(
    sample: dict,
    load: Callable[[str], bytes],
    answer: Sequence[int] | None = None,
    thumb: int = 128,
) -> bytes:
    """Renders ``sample`` (mvp.v1.Sample as JSON dict); ``load`` reads a frame URI."""
    label = sample["label"]
    base = label.get("index_base", 0)
    k = len(label["answer"])
    gap = sample.get("gap_position", 0)
    ctx = sample.get("context_frames", [])
    cands = sample.get("candidates", [])
    pad, title_h, cap_h = 8, 28, 22

    def tile(uri: str) -> Image.Image:
        image = Image.open(io.BytesIO(load(uri))).convert("RGB")
        image.thumbnail((thumb, thumb))
        return image

    ctx_tiles = [tile(f["uri"]) for f in ctx]
    cand_tiles = [tile(f["uri"]) for f in cands]
    th = max(t.height for t in ctx_tiles + cand_tiles)
    top_n, bottom_n = len(ctx) + k, len(cands)
    width = pad + max(top_n, bottom_n) * (thumb + pad)
    height = 2 * (title_h + th + cap_h) + 2 * pad
    sheet = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(16), _font(13)

    y = pad
    draw.text((pad, y), f"Context (gap of {k} after frame {gap})", fill=(0, 0, 0), font=font)
    y += title_h
    x = pad
    items: list[Image.Image | None] = ctx_tiles[:gap] + [None] * k + ctx_tiles[gap:]
    number = 1
    for item in items:
        if item is None:
            draw.rectangle([x, y, x + thumb - 1, y + th - 1], outline=GREY, width=2)
            draw.text((x + thumb // 2 - 6, y + th // 2 - 10), "?", fill=GREY, font=font)
        else:
            sheet.paste(item, (x, y))
            draw.text((x, y + th + 2), f"frame {number}", fill=(0, 0, 0), font=small)
            number += 1
        x += thumb + pad

    y += th + cap_h + pad
    draw.text((pad, y), "Candidates (green: ground truth #order; blue: model answer #order)", fill=(0, 0, 0), font=font)
    y += title_h
    truth = {a - base: i + 1 for i, a in enumerate(label["answer"])}
    chosen = {a - base: i + 1 for i, a in enumerate(answer or []) if 0 <= a - base < len(cands)}
    x = pad
    for i, item in enumerate(cand_tiles):
        sheet.paste(item, (x, y))
        if i in truth:
            draw.rectangle([x - 3, y - 3, x + item.width + 2, y + item.height + 2], outline=GREEN, width=4)
        caption = f"{i + base}"
        if i in truth:
            caption += f"  gt#{truth[i]}"
        draw.text((x, y + th + 2), caption, fill=GREEN if i in truth else (0, 0, 0), font=small)
        if i in chosen:
            draw.rectangle([x + item.width - 34, y, x + item.width - 1, y + 18], fill=BLUE)
            draw.text((x + item.width - 30, y + 1), f"#{chosen[i]}", fill=WHITE, font=small)
        x += thumb + pad
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
