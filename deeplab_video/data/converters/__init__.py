"""deeplab_video.data.converters."""
