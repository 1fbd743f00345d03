"""deeplab_video.loss."""
