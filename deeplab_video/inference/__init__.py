"""The application layer: a model with its weights, run over videos.

`model_loading.load_inference_model` builds the inference network of a config and fills
it from any checkpoint format `model.pretrained` reads; `infer_lib` runs it over a video
file or frame folder and writes PNGs, an overlay video and tracks (the
`deeplab-video-infer` CLI is `infer`). The video runner itself
(`post_processing.video_tracker.VideoRunner`, the one clip-window rule) stays beside the
clip segmenter, which the exported SavedModel serves too.
"""
