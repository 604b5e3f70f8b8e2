"""Networks: ResNet encoders, Monodepth2 depth decoder, MonoDepthSeg pose and mask network,
Dynamo-Depth's ego-pose and scene-flow networks."""

from mds_core.method.networks.depth_decoder import DepthDecoder, DepthNet, disparity_to_depth
from mds_core.method.networks.pose_mask import MaskDecoder, PoseDecoder, PoseMaskNet, PoseMaskOutput
from mds_core.method.networks.resnet_encoder import PretrainedWeightsError, ResnetEncoder, adapt_first_conv
from mds_core.method.networks.scene_flow import EgoPoseNet, SceneFlowNet, SceneFlowOutput

__all__ = [
    "DepthDecoder",
    "DepthNet",
    "EgoPoseNet",
    "MaskDecoder",
    "PoseDecoder",
    "PoseMaskNet",
    "PoseMaskOutput",
    "PretrainedWeightsError",
    "ResnetEncoder",
    "SceneFlowNet",
    "SceneFlowOutput",
    "adapt_first_conv",
    "disparity_to_depth",
]
