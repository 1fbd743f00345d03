"""deeplab_video.export."""
