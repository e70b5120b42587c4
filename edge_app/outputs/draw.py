"""Pure drawing: ``draw_overlay`` returns a new BGR image with the top-k labels, confidence bars and
the frame loop's speed (FPS, inference and end-to-end latency). OpenCV drawing only.

Everything is sized from the frame's short side, so the overlay reads the same on a 320x240 and
a 1920x1080 frame; frames smaller than ``min_side`` are enlarged first so the text stays legible.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_app.outputs import FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 480  # at this short side, text is drawn at scale 1
MIN_SIDE = 240
TOP_COLOR = (80, 200, 60)  # BGR green: the winning class
OTHER_COLOR = (200, 160, 60)  # BGR blue-ish: the runners-up
TEXT_COLOR = (255, 255, 255)
PANEL_COLOR = (0, 0, 0)
BANNER_COLOR = (0, 140, 255)  # BGR orange


def ascii_text(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only: anything else becomes ``?``."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` copy of a BGR, BGRA or grey frame."""
    image = np.asarray(frame)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")


def ui_scale(image: np.ndarray) -> float:
    """Text scale for an image: 1.0 at a 480-pixel short side, within [0.4, 4]."""
    return float(np.clip(min(image.shape[:2]) / REFERENCE_SIDE, 0.4, 4.0))


def _thickness(scale: float) -> int:
    return max(1, round(2 * scale))


def _fit(text: str, max_width: int, font_scale: float, thickness: int) -> str:
    """``text`` shortened with ``..`` until it is at most ``max_width`` pixels wide."""
    if cv2.getTextSize(text, FONT, font_scale, thickness)[0][0] <= max_width:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "..", FONT, font_scale, thickness)[0][0] > max_width:
        text = text[:-1]
    return text + ".."


def _shade(image: np.ndarray, box: tuple[int, int, int, int], alpha: float = 0.55) -> None:
    """Darken a rectangle in place so white text on top of it is readable over any picture."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = image[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)


def put_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int] = TEXT_COLOR) -> None:
    """Anti-aliased text with a thin dark outline, in place, ``org`` at the baseline's left end."""
    text = ascii_text(text)
    t = _thickness(scale)
    cv2.putText(image, text, org, FONT, 0.6 * scale, PANEL_COLOR, t + 2, cv2.LINE_AA)
    cv2.putText(image, text, org, FONT, 0.6 * scale, color, t, cv2.LINE_AA)


def stats_text(result: FrameResult) -> str:
    """``12.3 FPS | inference 8.1 ms | end-to-end 20.4 ms`` (parts whose numbers are missing are left out)."""
    parts = [f"{result.fps:.1f} FPS"] if result.fps is not None else []
    if "invoke" in result.latency_ms:
        parts.append(f"inference {result.latency_ms['invoke']:.1f} ms")
    if "total" in result.latency_ms:
        parts.append(f"end-to-end {result.latency_ms['total']:.1f} ms")
    return " | ".join(parts)


def draw_overlay(frame: np.ndarray, result: FrameResult, *, show_stats: bool = True, min_side: int = MIN_SIDE) -> np.ndarray:
    """A new annotated BGR image: the top-k labels with confidence bars (top left) and, with
    ``show_stats``, FPS and latency (bottom left). The input frame is not modified."""
    image = as_bgr(frame)
    short = min(image.shape[:2])
    if 0 < short < min_side:
        factor = min_side / short
        image = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_NEAREST)
    factor_drawn = image.shape[0] / max(1, frame.shape[0])
    h, w = image.shape[:2]
    s = ui_scale(image)
    font_scale, t = 0.6 * s, _thickness(s)
    if result.zoned and result.states:
        _draw_zones(image, result, factor_drawn, font_scale=font_scale, t=t, s=s)
    pad = max(4, round(8 * s))
    line_h = cv2.getTextSize("Ag", FONT, font_scale, t)[0][1] + max(4, round(10 * s))
    bar_h = max(3, round(6 * s))
    panel_w = min(w - 2 * pad, max(round(260 * s), w // 3))

    rows = [(f"{c.label}  {c.score * 100:.0f}%", float(c.score), i == 0) for i, c in enumerate(result.top)]
    if not rows:
        rows = [("no confident class", 0.0, False)]
    panel_h = pad + len(rows) * (line_h + bar_h + pad // 2) + pad // 2
    _shade(image, (pad, pad, pad + panel_w, pad + panel_h))
    y = pad
    for text, score, best in rows:
        y += line_h
        put_text(image, _fit(ascii_text(text), panel_w - 2 * pad, font_scale, t), (2 * pad, y - pad // 2), s)
        bar_w = round((panel_w - 2 * pad) * float(np.clip(score, 0.0, 1.0)))
        if bar_w > 0:
            cv2.rectangle(image, (2 * pad, y), (2 * pad + bar_w - 1, y + bar_h - 1), TOP_COLOR if best else OTHER_COLOR, cv2.FILLED)
        y += bar_h + pad // 2

    if show_stats:
        text = _fit(stats_text(result), w - 4 * pad, font_scale, t)
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, t)
        _shade(image, (pad, h - pad - th - base - pad, pad + tw + 2 * pad, h - pad))
        put_text(image, text, (2 * pad, h - pad - base - pad // 2), s)
    return image


def _draw_zones(image: np.ndarray, result: FrameResult, factor: float, *, font_scale: float, t: int, s: float) -> None:
    """Each zone's box with its name, debounced state and current top label."""
    for z in result.states or []:
        if z.box is None:
            continue
        x0, y0, x1, y1 = (round(v * factor) for v in z.box)
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), TOP_COLOR, max(1, t))
        now = f"{z.top[0].label} {z.top[0].score * 100:.0f}%" if z.top else "?"
        text = ascii_text(f"{z.name}: {z.state or '-'} ({now})")
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, t)
        ty = y0 + th + base + 2 if y0 - th - base - 4 < 0 else y0 - 4
        _shade(image, (x0, ty - th - base, min(image.shape[1], x0 + tw + 8), ty + base))
        put_text(image, text, (x0 + 4, ty - base // 2), s)


def draw_banner(image: np.ndarray, text: str) -> np.ndarray:
    """A new image with ``text`` (e.g. ``PAUSED``) in a band across the middle."""
    out = as_bgr(image)
    h, w = out.shape[:2]
    s = ui_scale(out) * 1.6
    t = _thickness(s)
    text = _fit(ascii_text(text), w - 20, 0.6 * s, t)
    (tw, th), base = cv2.getTextSize(text, FONT, 0.6 * s, t)
    band = th + base + round(20 * s)
    y0 = (h - band) // 2
    _shade(out, (0, y0, w, y0 + band), 0.6)
    put_text(out, text, ((w - tw) // 2, y0 + (band + th) // 2), s, BANNER_COLOR)
    return out
