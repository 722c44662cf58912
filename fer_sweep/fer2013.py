"""FER-2013's fixed facts: the seven emotions, the three splits, 48x48 grey images.

The dataset's own vocabulary, in the order of its label and ``Usage`` columns; everything
that names a class or a split reads it from here.
"""

from __future__ import annotations

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


SPLITS = ("Training", "PublicTest", "PrivateTest")


IMAGE_SIZE = 48


NUM_CLASSES = 7


INPUT_SHAPE = (48, 48, 1)
