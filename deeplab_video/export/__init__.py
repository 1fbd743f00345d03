"""SavedModel and TFLite export of Video-kMaX with panoptic post-processing and tracking.

    from deeplab_video.export import export_saved_model, export_tflite
    export_saved_model(opts, output_dir, checkpoint_path=None)
    export_tflite(opts, output_path, frame_size=(H, W), checkpoint_path=None,
                  quantization="none")   # or "float16", "dynamic_int8"; online (T=1) only

`serving_module` defines the signatures (segment_clip, initial_state, track);
`saved_model_runner.SavedModelVideoRunner` runs an export over whole videos with
TensorFlow and numpy only, `tflite_runner.TFLiteVideoRunner` a TFLite export with the
LiteRT interpreter and numpy only.
"""

from deeplab_video.export.export_lib import export_saved_model
from deeplab_video.export.tflite_export import export_tflite

__all__ = ["export_saved_model", "export_tflite"]
