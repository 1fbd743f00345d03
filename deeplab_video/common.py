"""Dictionary keys and constants shared across deeplab-video modules.

Every key that crosses a module boundary (data -> model -> loss -> post-processing ->
evaluation) is defined here once, as DeepLab2 does in its `common.py`.
"""

# ---------------------------------------------------------------------------------------
# Clip dataset keys (outputs of `deeplab_video.data.pipeline.build_clip_dataset`).
# ---------------------------------------------------------------------------------------
# float32 [batch, num_frames, height, width, 3], pixel values 0..255.
IMAGE = "image"
# int32 [batch, num_frames, height, width]: semantic * label_divisor + instance.
PANOPTIC = "panoptic"
# int32 [batch, num_frames, height, width]: semantic class or ignore_label.
SEMANTIC = "semantic"
# string [batch]: the sequence (video) each clip comes from.
SEQUENCE_ID = "sequence_id"
# int32 [batch, num_frames]: index of every frame of the clip inside its sequence.
FRAME_INDEX = "frame_index"
# int32 [batch, 2]: height and width of the frames before padding/cropping.
ORIGINAL_SIZE = "original_size"
# float32 [batch, num_frames, tube_height, tube_width, max_tubes]: one binary mask per
# ground-truth tube, sampled at the model's output stride (pixels [::stride, ::stride]).
TUBE_MASKS = "tube_masks"
# int32 [batch, max_tubes]: semantic class of every tube (0 for padding slots).
TUBE_CLASSES = "tube_classes"
# float32 [batch, max_tubes]: 1.0 for real tubes, 0.0 for padding slots.
TUBE_VALID = "tube_valid"
# float32 [batch, num_frames, tube_height, tube_width]: 1.0 on void pixels (ignore label
# or crowd regions) at the tube stride; these pixels are excluded from mask losses.
VOID_MASK = "void_mask"
# int32 [batch, num_frames, tube_height, tube_width]: semantic label at the tube stride.
SEMANTIC_STRIDED = "semantic_strided"

# ---------------------------------------------------------------------------------------
# Model output keys (`build_model(opts)(clip)` returns a dict with these keys).
# ---------------------------------------------------------------------------------------
# float32 [batch, num_frames, h, w, num_queries] at stride 4 (last decoder layer).
PRED_MASK_LOGITS = "mask_logits"
# float32 [batch, num_queries, num_classes + 1]; the last class is void.
PRED_CLASS_LOGITS = "class_logits"
# float32 [batch, num_queries, embedding_dim]: query embeddings of the last decoder layer.
PRED_QUERY_EMBEDDINGS = "query_embeddings"
# float32 [batch, num_queries, query_channels]: the decoder's final queries after the
# mask-embedding projection (1x1 conv + BN + GELU), the input of the mask head; the
# official Video-kMaX `cluster_feature`, which its LA-MB stores.
PRED_MASK_EMBEDDINGS = "mask_embeddings"
# float32 [batch, num_frames, h, w, embedding_dim]: L2-normalised pixel embeddings.
PRED_PIXEL_FEATURES = "pixel_features"
# float32 [batch, num_frames, h, w, num_classes]: auxiliary semantic logits (training only).
PRED_SEMANTIC_LOGITS = "semantic_logits"
# list of dicts, one per earlier decoder layer, each with PRED_MASK_LOGITS and
# PRED_CLASS_LOGITS: the deep-supervision outputs.
PRED_AUX_OUTPUTS = "aux_outputs"

# ---------------------------------------------------------------------------------------
# Loss names (keys of the loss dict; the trainer creates its metrics from these).
# ---------------------------------------------------------------------------------------
LOSS_TOTAL = "total_loss"
LOSS_PQ_STYLE = "pq_style_loss"
LOSS_MASK_ID_CROSS_ENTROPY = "mask_id_cross_entropy_loss"
LOSS_INSTANCE_DISCRIMINATION = "instance_discrimination_loss"
LOSS_AUXILIARY_SEMANTIC = "auxiliary_semantic_loss"


def clip_stride(clip_length: int) -> int:
    """Frames between the starts of consecutive clips of a video: max(T - 1, 1).

    The one clip-window rule of evaluation, inference, export and the evaluation clip
    dataset: near-online clips (T > 1) share exactly one frame, which Video-Stitch joins
    them on; online clips (T = 1) follow each other.
    """
    return max(clip_length - 1, 1)
