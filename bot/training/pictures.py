"""Pictures for a model's folder, drawn with Pillow: `predictions.png` (sample posts as tweet-like cards, the
card's thumbnail, as huggingtweets' website showed them) and `loss.png` (the training loss curve).

Both are drawn at twice their size and scaled down, which smooths circles and lines. Avatars are drawn as
coloured circles with initials: the trainer runs offline, so avatar URLs are never fetched. Files are
written atomically (temporary file, then rename), so a published model's pictures can be redrawn in place.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path

S = 2  # drawing scale; the saved image is 1/S of the drawing

WHITE = (255, 255, 255)
INK = (15, 20, 25)
GREY = (83, 100, 113)
RULE = (207, 217, 222)
GRID = (235, 238, 240)
BLUE = (29, 155, 240)
PALE_BLUE = (165, 212, 245)
AVATAR_COLOURS = [(29, 155, 240), (0, 186, 124), (249, 24, 128), (120, 86, 255), (255, 122, 0), (0, 150, 160)]

CARD_WIDTH = 600


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    """DejaVu Sans when installed, else Pillow's bundled scalable font (Pillow >= 10.1)."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def save_png(img: Image.Image, path: Path) -> Path:
    """Scale the drawing down to its final size and write it atomically."""
    path = Path(path)
    img = img.resize((img.width // S, img.height // S), Image.Resampling.LANCZOS)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return path


# -- predictions.png ------------------------------------------------------------------------------


def initials(name: str) -> str:
    letters = [w[0] for w in name.replace("_", " ").split() if w[0].isalnum()]
    return "".join(letters[:2]).upper() or "?"


def avatar_colour(handle: str) -> tuple[int, int, int]:
    return AVATAR_COLOURS[zlib.crc32(handle.encode()) % len(AVATAR_COLOURS)]


def wrap_words(words: list[tuple[str, bool]], width: float, size: int) -> list[list[tuple[str, bool]]]:
    """Greedy word wrap of (word, bold) pairs into lines no wider than `width` (a too-long word is cut)."""
    lines: list[list[tuple[str, bool]]] = [[]]
    x = 0.0
    space = font(size).getlength(" ")
    for word, bold in words:
        f = font(size, bold)
        while f.getlength(word) > width:  # a word wider than a line: cut it where it overflows
            cut = max(1, next(i for i in range(1, len(word) + 1) if f.getlength(word[:i]) > width) - 1)
            if lines[-1]:
                lines.append([])
            lines[-1].append((word[:cut], bold))
            lines.append([])
            word, x = word[cut:], 0.0
        w = f.getlength(word)
        if lines[-1] and x + space + w > width:
            lines.append([])
            x = 0.0
        x += (space if lines[-1] else 0) + w
        lines[-1].append((word, bold))
    return [line for line in lines if line]


def _words(prompt: str, text: str) -> list[tuple[str, bool]]:
    """The text as (word, bold) pairs: the prompt's words bold when the text starts with them (all but the
    last when the model glued its first word onto the prompt's last one). Control characters are dropped."""
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch in " \t")
    prompt = " ".join(prompt.split())
    if not prompt or not text.startswith(prompt):
        return [(w, False) for w in text.split()]
    bold = prompt.split()
    rest = text[len(prompt):]
    if rest[:1].strip():  # "My dream is" + "n't" -> "isn't" is one word, not bold
        rest = bold.pop() + rest
    return [(w, True) for w in bold] + [(w, False) for w in rest.split()]


def _draw_avatars(draw: ImageDraw.ImageDraw, accounts: Sequence[dict], x: int, y: int, d: int) -> int:
    """Overlapping initial circles; returns the x just right of the last one."""
    step = d - 10 * S
    for a in accounts:
        name = a.get("display_name") or a.get("handle") or "?"
        draw.ellipse((x - 2 * S, y - 2 * S, x + d + 2 * S, y + d + 2 * S), fill=WHITE)
        draw.ellipse((x, y, x + d, y + d), fill=avatar_colour(a.get("handle") or name))
        draw.text((x + d / 2, y + d / 2), initials(name), font=font(d * 2 // 5, True), fill=WHITE, anchor="mm")
        x += step
    return x + d - step


def predictions_png(path: Path, accounts: Sequence[dict], prompt: str, texts: Sequence[str]) -> Path:
    """One tweet-like card per text: avatars, display name(s), @handle(s), the prompt in bold, the rest."""
    accounts = list(accounts) or [{"handle": "mimicbot", "display_name": "mimicbot"}]
    pad, avatar, body = 16 * S, 48 * S, 17 * S
    width = CARD_WIDTH * S
    name = " & ".join(a.get("display_name") or a.get("handle") for a in accounts)
    handles = " ".join("@" + a["handle"] for a in accounts)
    badge = "AI BOT" if len(accounts) == 1 else "AI CYBORG"
    avatars_w = avatar + (len(accounts) - 1) * (avatar - 10 * S)
    text_x = pad + avatars_w + 12 * S
    text_w = width - text_x - pad
    line_h = int(body * 1.35)
    cards = [wrap_words(_words(prompt, t), text_w, body) for t in texts] or [[[("(no samples)", False)]]]
    heights = [max(avatar, 24 * S + 22 * S + len(lines) * line_h) + 2 * pad for lines in cards]

    img = Image.new("RGB", (width, sum(heights) + S), WHITE)
    draw = ImageDraw.Draw(img)
    y = 0
    for lines, h in zip(cards, heights):
        _draw_avatars(draw, accounts, pad, y + pad, avatar)
        _draw_header(draw, text_x, y + pad, text_w, name, handles, badge)
        ty = y + pad + 46 * S
        for line in lines:
            x = float(text_x)
            for word, bold in line:
                f = font(body, bold)
                draw.text((x, ty), word, font=f, fill=INK)
                x += f.getlength(word + " ")
            ty += line_h
        y += h
        draw.line((0, y, width, y), fill=RULE, width=S)
    return save_png(img, path)


def _draw_header(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, name: str, handles: str, badge: str) -> None:
    """Name in bold, a small badge, and the handles in grey underneath (each shortened to fit)."""
    name_font, small = font(16 * S, True), font(15 * S)
    badge_font = font(11 * S, True)
    badge_w = badge_font.getlength(badge) + 12 * S
    name = _fit(name, name_font, width - badge_w - 8 * S)
    draw.text((x, y), name, font=name_font, fill=INK)
    bx = x + name_font.getlength(name) + 8 * S
    draw.rounded_rectangle((bx, y + 2 * S, bx + badge_w, y + 20 * S), radius=9 * S, fill=BLUE)
    draw.text((bx + badge_w / 2, y + 11 * S), badge, font=badge_font, fill=WHITE, anchor="mm")
    draw.text((x, y + 22 * S), _fit(handles, small, width), font=small, fill=GREY)


def _fit(text: str, f: ImageFont.ImageFont, width: float) -> str:
    """`text`, cut with an ellipsis when wider than `width`."""
    if f.getlength(text) <= width:
        return text
    while text and f.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


# -- loss.png -------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def smoothed(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing); by default over about a
    tenth of the run, at most weight 0.9, so that a short run's curve does not lag behind its points."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 10 / max(1, len(values))))
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def loss_png(path: Path, losses: Sequence[float], *, title: str = "Training loss") -> Path:
    """The loss at every step (pale) and its moving average (blue), on a labelled grid."""
    w, h = 800 * S, 400 * S
    left, right, top, bottom = 70 * S, 24 * S, 48 * S, 52 * S
    img = Image.new("RGB", (w, h), WHITE)
    draw = ImageDraw.Draw(img)
    small, label = font(12 * S), font(13 * S)
    draw.text((left, 16 * S), title, font=font(16 * S, True), fill=INK)
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    values = [float(v) for v in losses if math.isfinite(v)]
    if not values:
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), "no training steps", font=label, fill=GREY, anchor="mm")
        return save_png(img, path)

    lo, hi = min(values), max(values)
    margin = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - margin, hi + margin
    steps = len(values)
    px = lambda i: x0 + (x1 - x0) * (i / max(1, steps - 1))  # noqa: E731  (step index -> x)
    py = lambda v: y1 - (y1 - y0) * (v - lo) / (hi - lo)  # noqa: E731  (loss -> y)

    for t in nice_ticks(lo, hi):
        draw.line((x0, py(t), x1, py(t)), fill=GRID, width=S)
        draw.text((x0 - 8 * S, py(t)), _label(t), font=small, fill=GREY, anchor="rm")
    for t in nice_ticks(1, steps):
        if t == int(t):
            draw.line((px(t - 1), y1, px(t - 1), y1 + 5 * S), fill=GREY, width=S)
            draw.text((px(t - 1), y1 + 8 * S), f"{int(t):,}", font=small, fill=GREY, anchor="mt")
    draw.line((x0, y1, x1, y1), fill=GREY, width=S)
    draw.line((x0, y0, x0, y1), fill=GREY, width=S)
    draw.text(((x0 + x1) / 2, h - 14 * S), "step", font=label, fill=GREY, anchor="mb")
    draw.text((16 * S, (y0 + y1) / 2), "loss", font=label, fill=GREY, anchor="lm")

    if steps == 1:
        draw.ellipse((px(0) - 4 * S, py(values[0]) - 4 * S, px(0) + 4 * S, py(values[0]) + 4 * S), fill=BLUE)
        return save_png(img, path)
    draw.line([(px(i), py(v)) for i, v in enumerate(values)], fill=PALE_BLUE, width=S, joint="curve")
    draw.line([(px(i), py(v)) for i, v in enumerate(smoothed(values))], fill=BLUE, width=3 * S, joint="curve")
    draw.text((x1, 16 * S), f"last {values[-1]:.3f}   min {min(values):.3f}   {steps:,} steps", font=small,
              fill=GREY, anchor="ra")
    return save_png(img, path)
