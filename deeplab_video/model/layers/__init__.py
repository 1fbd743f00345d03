"""deeplab_video.model.layers."""
