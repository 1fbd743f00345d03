"""deeplab-video: Video-kMaX online and near-online video panoptic segmentation."""

__version__ = "0.1.0"
