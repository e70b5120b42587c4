"""Real photos for tests: the first cat and dog JPEGs of the cats-vs-dogs archive (../shared/datasets), decoded in memory."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np


def first_pet_photos(archive: Path, per_class: int, split: str = "test") -> list[tuple[str, np.ndarray]]:
    """The first ``per_class`` cat and then dog JPEGs of the archive's ``split``, as a camera gives them (BGR, full size)."""
    wanted: dict[str, list[np.ndarray]] = {"cat": [], "dog": []}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] != split or len(wanted.get(parts[1], [0] * per_class)) >= per_class:
                continue
            data = tar.extractfile(member)
            assert data is not None, member.name
            bgr = cv2.imdecode(np.frombuffer(data.read(), np.uint8), cv2.IMREAD_COLOR)
            assert bgr is not None, f"{member.name} does not decode"
            wanted[parts[1]].append(bgr)
            if all(len(v) == per_class for v in wanted.values()):
                break
    return [(name, img) for name, imgs in wanted.items() for img in imgs]
