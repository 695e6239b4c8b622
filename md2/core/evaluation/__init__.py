"""KITTI evaluations with the reference's numbers: depth (Eigen, Eigen benchmark, benchmark PNGs) and odometry.

Modules: :mod:`~md2.core.evaluation.depth` (predict, score, encode disparities), :mod:`.depth_job` (the
``md2 evaluate-depth`` procedure), :mod:`.pose` (relative poses, snippet and full-trajectory errors),
:mod:`.pose_job` (``md2 evaluate-pose``), :mod:`.datasets` (test images), :mod:`.report` (table, LaTeX line,
JSON, trajectory plot).
"""
