"""deeplab_video.trainer: training and evaluation jobs on orbit + tf.distribute."""
