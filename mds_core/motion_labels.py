"""The per-pixel motion labels of the sequence-folder format (``motion/<frame>.png``), as the generator
writes them and the evaluation, the oracle rungs and the real-footage readers read them."""

MOTION_STATIC = 0  # static background (road, buildings, poles) and sky
MOTION_MOVING = 1  # pixel of an independently moving object
MOTION_PARKED = 2  # pixel of a static movable object (parked car)
MOTION_UNLABELLED = 255  # reserved; the generator labels every pixel
