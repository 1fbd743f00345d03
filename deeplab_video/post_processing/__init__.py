"""deeplab_video.post_processing."""
