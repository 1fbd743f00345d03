"""deeplab_video.data."""
