"""deeplab_video.evaluation: STQ, VPQ and PQ metrics and the evaluation CLI."""
