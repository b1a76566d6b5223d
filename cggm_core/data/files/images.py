"""Image decoding and preprocessing in numpy (torchvision is not installable beside our torch).

Decoding and resampling use Pillow; cropping and normalising are plain numpy. On a PIL image,
torchvision's `Resize` calls Pillow's own bilinear resampler and `ToTensor` divides by 255, so
`ImagePipeline()` is built to match the official CGGM Food-101 evaluation transform
(`Resize([224, 224])` then `ToTensor()`); not compared against torchvision here, which cannot be
installed beside our torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import DataFormatError, optional_module


@dataclass(frozen=True)
class ImagePipeline:
    """How an image becomes a (3, size, size) float32 array.

    - `resize_shorter=None` (the official): squash the image to size × size, whatever its aspect.
    - `resize_shorter=S`: scale the shorter side to S (aspect kept, longer side truncated to an
      int as torchvision does), then take the centre size × size crop (offsets rounded as
      torchvision's `center_crop`).
    - `mean`, `std`: per channel, applied to values in [0, 1]. The defaults (0 and 1) are the
      official's (no normalisation); ViT-base's own processor would use 0.5 and 0.5.
    """

    size: int = 224
    resize_shorter: int | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be ≥ 1, got {self.size}")
        if self.resize_shorter is not None and self.resize_shorter < self.size:
            raise ValueError(f"resize_shorter ({self.resize_shorter}) must be ≥ the crop size ({self.size})")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")


def load_rgb(path: Path) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB, or DataFormatError naming the file."""
    image_mod = optional_module("PIL.Image")
    try:
        with image_mod.open(path) as img:
            return np.asarray(img.convert("RGB"))  # convert() forces the full decode
    except FileNotFoundError as e:
        raise DataFormatError(path, "no such image file") from e
    except (OSError, ValueError, SyntaxError) as e:
        # UnidentifiedImageError is an OSError; a short file fails in decode as OSError too.
        raise DataFormatError(path, f"truncated or not an image file ({type(e).__name__}: {e})") from e


def preprocess(rgb: np.ndarray, pipeline: ImagePipeline) -> np.ndarray:
    """(H, W, 3) uint8 → (3, size, size) float32, resized, centre-cropped and normalised."""
    image_mod = optional_module("PIL.Image")
    h, w = rgb.shape[:2]
    if pipeline.resize_shorter is None:
        new_w, new_h = pipeline.size, pipeline.size
    else:
        s = pipeline.resize_shorter
        new_w, new_h = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
    if (new_w, new_h) != (w, h):
        img = image_mod.fromarray(rgb).resize((new_w, new_h), image_mod.Resampling.BILINEAR)
        rgb = np.asarray(img)
    top = int(round((new_h - pipeline.size) / 2.0))
    left = int(round((new_w - pipeline.size) / 2.0))
    crop = rgb[top : top + pipeline.size, left : left + pipeline.size]  # (size, size, 3)
    x = crop.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)  # (3, size, size) in [0, 1]
    mean = np.asarray(pipeline.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(pipeline.std, dtype=np.float32)[:, None, None]
    return (x - mean) / std
