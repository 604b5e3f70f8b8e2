"""Self-supervised losses: SSIM, photometric reprojection (eq. 8), smoothness, the objective (eq. 9)."""

from mds_core.method.losses.objective import LossOutput, SelfSupervisedObjective
from mds_core.method.losses.photometric import ReprojectionLoss, minimum_reprojection, photometric_error
from mds_core.method.losses.smoothness import disparity_smoothness, edge_aware_smoothness
from mds_core.method.losses.ssim import ssim, ssim_dissimilarity

__all__ = [
    "LossOutput",
    "ReprojectionLoss",
    "SelfSupervisedObjective",
    "disparity_smoothness",
    "edge_aware_smoothness",
    "minimum_reprojection",
    "photometric_error",
    "ssim",
    "ssim_dissimilarity",
]
