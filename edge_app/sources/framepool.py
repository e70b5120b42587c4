"""``FramePool``: frame buffers the capture thread fills again once nobody holds them any more.

``VideoCapture.read(image)`` decodes into a given array of the right size instead of allocating a new
one, so a camera at 30 fps does not make and drop 30 one-megabyte buffers a second (which glibc's heaps
fragment over hours). A buffer is free when no one but the pool refers to it (its reference count; the
frame loop, the web view and the buffer of waiting frames all hold references while they use a frame),
so a frame is never overwritten while anything can still see it. A pool that finds no free buffer
lets OpenCV allocate, and keeps at most ``capacity`` buffers.
"""

from __future__ import annotations

import sys

import numpy as np

DEFAULT_CAPACITY = 8
_POOL_REFS = 3  # sys.getrefcount(buf) while only the pool holds it: the list, the loop variable, the argument


class FramePool:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.reused = 0  # reads that filled a recycled buffer
        self._buffers: list[np.ndarray] = []

    def free(self) -> np.ndarray | None:
        """A buffer nobody else refers to, or None."""
        for buf in self._buffers:
            if sys.getrefcount(buf) <= _POOL_REFS:
                return buf
        return None

    def keep(self, image: np.ndarray, recycled: np.ndarray | None) -> None:
        """After a read: count a reuse, or adopt the array OpenCV allocated (a new size replaces the old buffers)."""
        if recycled is not None and image is recycled:
            self.reused += 1
            return
        if self._buffers and self._buffers[0].shape != image.shape:
            self._buffers.clear()
        if len(self._buffers) < self.capacity:
            self._buffers.append(image)

    def clear(self) -> None:
        self._buffers.clear()
