"""Monodepth2's networks: ResNet encoder, depth decoder, pose decoder, PoseCNN."""

from md2.core.networks.depth_decoder import DepthDecoder
from md2.core.networks.pose_cnn import PoseCNN
from md2.core.networks.pose_decoder import PoseDecoder
from md2.core.networks.resnet_encoder import RESNETS, ResnetEncoder

__all__ = ["RESNETS", "DepthDecoder", "PoseCNN", "PoseDecoder", "ResnetEncoder"]
