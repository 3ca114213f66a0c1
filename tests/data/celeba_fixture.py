"""A tiny CelebA source in the official layout, for any test that needs one.

```python
from tests.data.celeba_fixture import make_tiny_celeba
source = make_tiny_celeba(tmp_path / "celeba", n=12)
```
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The 40 columns of list_attr_celeba.txt, in the official order.
ALL_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
WIDTH, HEIGHT = 178, 218
CROP_BOX = (15, 35, 163, 183)  # the centred 148x148 square: left, top, right, bottom
BORDER = (0, 255, 0)  # outside the crop: pure green, which must not reach the 64x64 images


def face_colour(i: int) -> tuple[int, int, int]:
    """The flat colour inside the crop of image ``i`` (0-based)."""
    return (40 + 17 * i % 180, 200 - 13 * i % 150, 60 + 29 * i % 170)


def attribute_value(i: int, j: int) -> int:
    """The value (1 or -1) of column ``j`` for image ``i`` (both 0-based)."""
    return 1 if (7 * i + 3 * j) % 5 < 2 else -1


def partition_of(i: int, n: int) -> int:
    """Roughly 60% train (0), 20% valid (1), 20% test (2), in file order like the real list."""
    return 0 if i < max(1, round(0.6 * n)) else 1 if i < max(2, round(0.8 * n)) else 2


def make_tiny_celeba(root: Path, n: int = 12) -> Path:
    """Write ``n`` (at least 3) 178x218 JPEGs and the two official lists under ``root``.

    Image ``i`` (file ``{i + 1:06d}.jpg``) is ``face_colour(i)`` inside the centred
    148x148 crop and green outside; its attributes are :func:`attribute_value`; its
    partition :func:`partition_of`.

    Returns:
        ``root``.
    """
    from PIL import Image

    assert n >= 3, "every partition needs an image"
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    attr_lines = [str(n), " ".join(ALL_ATTRIBUTES)]
    partition_lines = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[:] = BORDER
        left, top, right, bottom = CROP_BOX
        pixels[top:bottom, left:right] = face_colour(i)
        Image.fromarray(pixels).save(images / name, quality=95)
        values = " ".join(f"{attribute_value(i, j):2d}" for j in range(len(ALL_ATTRIBUTES)))
        attr_lines.append(f"{name} {values}")
        partition_lines.append(f"{name} {partition_of(i, n)}")
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition_lines) + "\n")
    return root
