"""deeplab-video: Video-kMaX online and near-online video panoptic segmentation."""

import os

__version__ = "0.1.0"
# Set to 1 for tracebacks of user errors and TensorFlow's full logs (see entry_point).
DEBUG_ENV = "DEEPLAB_VIDEO_DEBUG"

# TensorFlow's C++ start-up log (CUDA probing, oneDNN and CPU-feature notes) tells a user
# nothing they can act on. Modules of this package import TensorFlow, so its log level is
# set here, before any of them can: errors only (2), and nothing (3) on a machine without
# an NVIDIA driver, where the only errors are about the missing CUDA driver. A value set
# in the environment wins; DEEPLAB_VIDEO_DEBUG=1 keeps TensorFlow's own default.
if os.environ.get(DEBUG_ENV, "") in ("", "0"):
    _GPU_DRIVER = os.path.exists("/proc/driver/nvidia/version")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if _GPU_DRIVER else "3")
