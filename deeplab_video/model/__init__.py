"""deeplab_video.model."""
