"""Numpy drawing primitives on an RGB uint8 canvas (H, W, 3); each touches only its bounding box.

Sprites are premultiplied float32 RGBA (h, w, 4) in [0, 1]: compositing is ``dst * (1 - a) + rgb``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_rgba", "premultiply", "blit", "disk", "rect", "triangle_flame"]


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA (h, w, 4) -> premultiplied float32 RGBA (h, w, 4)."""
    x = rgba.astype(np.float32) / 255.0
    x[..., :3] *= x[..., 3:4]
    return x


def resize_rgba(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Box-ish downscale of premultiplied RGBA (H, W, 4) -> (h, w, 4): mean of a 2x2 grid of point samples
    per output pixel (cheap anti-aliasing; premultiplied so edges do not darken)."""
    H, W = img.shape[:2]
    acc = np.zeros((h, w, 4), np.float32)
    for oy in (0.25, 0.75):
        for ox in (0.25, 0.75):
            ys = np.minimum(((np.arange(h) + oy) * H / h).astype(np.int64), H - 1)
            xs = np.minimum(((np.arange(w) + ox) * W / w).astype(np.int64), W - 1)
            acc += img[ys[:, None], xs[None, :]]
    return acc * 0.25


def _clip_box(canvas: np.ndarray, x: int, y: int, w: int, h: int):
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def blit(canvas: np.ndarray, sprite: np.ndarray, x: int, y: int, *, tint: tuple | None = None,
         alpha: float = 1.0) -> None:
    """Composite premultiplied sprite (h, w, 4) with its top-left at (x, y), in place on canvas."""
    h, w = sprite.shape[:2]
    box = _clip_box(canvas, x, y, w, h)
    if box is None:
        return
    x0, y0, x1, y1 = box
    s = sprite[y0 - y: y1 - y, x0 - x: x1 - x]
    rgb, a = s[..., :3], s[..., 3:4]
    if tint is not None:  # lerp towards a flat colour, keeping coverage
        rgb = rgb * 0.4 + np.asarray(tint, np.float32) * 0.6 * a
    if alpha != 1.0:
        rgb, a = rgb * alpha, a * alpha
    dst = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.clip(dst * (1.0 - a) + rgb * 255.0, 0, 255).astype(np.uint8)


def disk(canvas: np.ndarray, cx: float, cy: float, r: float, color: tuple, alpha: float = 1.0,
         inner: float = 0.0) -> None:
    """Filled disk (or ring when inner > 0) with a one-pixel soft edge."""
    box = _clip_box(canvas, int(cx - r - 1), int(cy - r - 1), int(2 * r + 3), int(2 * r + 3))
    if box is None or r <= 0:
        return
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    a = np.clip(r - d + 0.5, 0, 1)
    if inner > 0:
        a *= np.clip(d - inner + 0.5, 0, 1)
    a = (a * alpha)[..., None].astype(np.float32)
    dst = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (dst * (1 - a) + np.asarray(color, np.float32) * a).astype(np.uint8)


def rect(canvas: np.ndarray, x: int, y: int, w: int, h: int, color: tuple, alpha: float = 1.0) -> None:
    box = _clip_box(canvas, x, y, w, h)
    if box is None:
        return
    x0, y0, x1, y1 = box
    if alpha >= 1.0:
        canvas[y0:y1, x0:x1] = color
    else:
        dst = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = (dst * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)


def triangle_flame(canvas: np.ndarray, x: float, cy: float, length: float, half_h: float, direction: int,
                   color: tuple) -> None:
    """A horizontal flame: base (height 2*half_h) at x, tip at x + direction * length."""
    x_lo, x_hi = (x, x + length) if direction > 0 else (x - length, x)
    box = _clip_box(canvas, int(x_lo), int(cy - half_h), int(x_hi - x_lo) + 2, int(2 * half_h) + 2)
    if box is None or length <= 0:
        return
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1]
    along = (xx + 0.5 - x) * direction / length  # 0 at the base, 1 at the tip
    inside = (along >= 0) & (along <= 1) & (np.abs(yy + 0.5 - cy) <= half_h * (1 - along) + 0.5)
    a = inside[..., None].astype(np.float32)
    dst = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (dst * (1 - a) + np.asarray(color, np.float32) * a).astype(np.uint8)
