"""SavedModel export of Video-kMaX with panoptic post-processing and tracking.

    from deeplab_video.export import export_saved_model
    export_saved_model(opts, output_dir, checkpoint_path=None)

`serving_module` defines the signatures (segment_clip, initial_state, track);
`saved_model_runner.SavedModelVideoRunner` runs an export over whole videos with
TensorFlow and numpy only.
"""

from deeplab_video.export.export_lib import export_saved_model

__all__ = ["export_saved_model"]
