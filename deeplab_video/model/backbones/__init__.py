"""deeplab_video.model.backbones."""
