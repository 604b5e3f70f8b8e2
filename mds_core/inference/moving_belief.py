"""The moving probability of a stream, accumulated along the optical flow.

One frame pair says little about a slow mover: a car ahead at the camera's speed, a walker far away; and its
masks and evidence flicker from frame to frame on the static world (texture, DIS's errors). A camera stream shows
the same objects frame after frame, so the predictor keeps a belief per pixel, as an occupancy grid does per cell:
in log-odds ``L = log(p / (1 - p))``, the current frame's own moving probability ``p_t`` plus :data:`BELIEF_DECAY`
times the belief of the previous frame, carried to the current frame along the optical flow (a pixel ``x`` of the
current frame was at ``x + flow(x)`` in the previous one: :func:`mds_core.method.motion_evidence.dense_flow`)::

    L_t(x) = logit(p_t(x)) + BELIEF_DECAY * L_{t-1}(x + flow(x))

where the flow is trusted; elsewhere (occlusions, content entering the view), and at a stream's start, the frame's
own. A decay below 1 forgets: a frame's say counts 0.3 in the next frame and 0.09 in the one after, so a mover
that stops is static again within a frame or two. Not in the paper (docs/decomposition-ladder.md, "Over the
stream": 0.3 chosen on held-out city drives, where it kept every situation's AP and best F1 or raised them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mds_core.method.motion_evidence import continues_stream, sample_along_flow

#: How much of the previous frame's belief (log-odds) the current frame keeps.
BELIEF_DECAY = 0.3
#: Probabilities are clamped to [BELIEF_EPS, 1 - BELIEF_EPS] before their log-odds (a certain 0 or 1 would be
#: infinite, and no later frame could change it).
BELIEF_EPS = 1e-4


class MovingBelief:
    """The log-odds belief of the module's docstring, for one camera stream (a predictor keeps one).

    :meth:`update` takes each frame's own moving probability with the flow of its frame pair; a pair whose source
    is not the previous pair's target (a new stream, a skipped frame, another camera) starts the belief anew.
    """

    def __init__(self, decay: float = BELIEF_DECAY):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"a belief's decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._target: Tensor | None = None
        self._belief: Tensor | None = None  # (B, H, W) log-odds of the previous target

    def update(self, target: Tensor, source: Tensor, probability: Tensor, flow: Tensor, valid: Tensor) -> Tensor:
        """``(B, H, W)`` the accumulated moving probability of ``target``.

        Args:
            target, source: ``(B, 3, H, W)`` the frame pair (``source`` the earlier frame).
            probability: ``(B, H, W)`` the target's own moving probability.
            flow, valid: ``(B, 2, H, W)`` target -> source optical flow in pixels, and ``(B, H, W)`` where it is
                trusted (:func:`mds_core.method.motion_evidence.dense_flow`).
        """
        belief = torch.logit(probability.float(), eps=BELIEF_EPS)
        continues = (continues_stream(self._target, source) and self._belief is not None
                     and self._belief.shape == belief.shape)
        if not continues or self.decay == 0:
            self._target, self._belief = target, belief
            return probability  # a stream's first frame: its own
        carried = sample_along_flow(self._belief[:, None], flow.float(), "border")[:, 0]
        belief = torch.where(valid.to(belief.device), belief + self.decay * carried, belief)
        self._target, self._belief = target, belief
        return torch.sigmoid(belief)
