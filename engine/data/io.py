"""Reading one image robustly: every format PIL knows, any mode, EXIF orientation applied."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Pillow's default bomb limit is ~89 Mpx with a warning, an error at twice that. We refuse at the
# default limit: a training image that large is a mistake or an attack.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class ImageReadError(ValueError):
    """The file is not an image we can read. The message says why, in words a user understands."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float greyscale to 8-bit 'L', scaling the full range."""
    arr = np.asarray(img)
    if img.mode in ("I;16", "I;16B", "I;16L"):
        arr = arr.astype(np.float32) / 257.0
    else:  # 'I' (32-bit int) or 'F' (float): stretch what is there
        arr = arr.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode == "I" and hi <= 65535 and lo >= 0:
            arr = arr / (257.0 if hi > 255 else 1.0)
        else:
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")


def open_image(src: str | os.PathLike | bytes | BinaryIO, *, mode: str | None = None) -> Image.Image:
    """Decode an image fully and return it upright in ``mode`` ('L' or 'RGB'; None keeps a
    normalised native mode: L, LA, RGB or RGBA).

    Raises ImageReadError with a readable reason for empty, truncated, non-image and
    decompression-bomb files.
    """
    name = str(src) if isinstance(src, (str, os.PathLike)) else "uploaded file"
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise ImageReadError(f"{name}: the file is empty (0 bytes).")
        src = io.BytesIO(src)
    elif isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise ImageReadError(f"{name}: no such file.")
        if Path(src).stat().st_size == 0:
            raise ImageReadError(f"{name}: the file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(
                    f"{name}: {w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit "
                    "(possible decompression bomb)."
                )
            img.load()
    except ImageReadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{name}: image is too large (possible decompression bomb): {e}") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{name}: not an image file PIL can read (wrong extension or corrupt).") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated / broken data
        raise ImageReadError(f"{name}: the image data is truncated or corrupt ({e}).") from e

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        pass
    return convert_mode(img, mode)


def convert_mode(img: Image.Image, mode: str | None) -> Image.Image:
    """Bring any PIL mode to L / RGB (or a normalised native mode when ``mode`` is None).

    Transparent pixels are composited on black, the background of the built-in datasets.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("1",):
        img = img.convert("L")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB" if mode != "L" else "L")
        if mode is None and img.mode == "RGB" and rgba.mode == "RGBA" and _is_grey(img):
            img = img.convert("L")
    if mode is None:
        return img if img.mode in ("L", "RGB") else img.convert("RGB")
    return img if img.mode == mode else img.convert(mode)


def _is_grey(img: Image.Image) -> bool:
    a = np.asarray(img)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
