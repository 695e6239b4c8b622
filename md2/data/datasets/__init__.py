"""Machinery shared by md2's datasets: the :class:`FrameDataset` base, frame references, image decoding.

The readers themselves are :mod:`md2.data.kitti` (KITTI raw, odometry, depth benchmark) and
:mod:`md2.data.video` (a folder of video frames).
"""

from md2.data.datasets.base import FrameDataset
from md2.data.datasets.refs import FrameRef, as_frame_ref

__all__ = ["FrameDataset", "FrameRef", "as_frame_ref"]
