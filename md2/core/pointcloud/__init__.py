"""Depth in 3D: coloured point clouds from the predicted depth (``md2 predict --point-cloud``).

Torch-free (NumPy and Pillow): ``intrinsics.py`` (where the camera's focal length and centre come from),
``backproject.py`` (depth -> camera-frame points, streamed in row bands), ``ply.py`` (binary PLY writer),
``render.py`` (the small NAME_cloud.png view), ``fuse.py`` (voxel-downsampled fusion of a video's frames),
``photo.py`` (one photo's cloud, called from the predict pipeline's finishing step).
"""
