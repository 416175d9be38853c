"""Image files on the device: which files in a folder are images, and one decoded as uint8 CHW.

Pillow is optional on a device (numpy-only devices pass arrays); reading files needs it and says
so in one line when it is missing. Every failure names the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The images in `folder` (directly inside it unless `recursive`), sorted; dot-files skipped."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and p.is_file())


def pillow(why: str) -> Any:
    """The PIL.Image module, or a one-line ValueError saying what needs it."""
    try:
        from PIL import Image  # lazy: optional on the device
    except ImportError:
        raise ValueError(f"{why} needs Pillow (pip install Pillow); or pass numpy arrays") from None
    return Image


def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 (channels, H, W). A colour image for a grey network (or the reverse) is an error: the
    network was trained on one kind, and a silent conversion would hide a wrong folder."""
    image = pillow(f"reading {path}")
    try:
        with image.open(path) as im:
            im.load()
            grey = im.mode in GREY_MODES
            if grey != (channels == 1):
                kind = "grey" if grey else "colour"
                raise ValueError(f"{path} is a {kind} image but the network takes "
                                 f"{'grey (1 channel)' if channels == 1 else 'RGB (3 channel)'} images")
            a = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises many types for a corrupt or truncated file
        raise ValueError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    return a[None] if channels == 1 else a.transpose(2, 0, 1)
