"""The Video-kMaX meta-architecture: backbone, pixel decoder, clip-kMaX decoder, heads.

Frames of a clip are folded into the batch for the backbone and the pixel decoder (which
work frame by frame), then unfolded to [batch, num_frames, h, w, channels] for the
transformer decoder, which attends over the T*h*w pixels of the whole clip, and for the
heads, which predict one mask per query over all frames (a tube). The same weights serve
any clip length T.

The components come built by `builder.build_model`; this module only wires them, as
DeepLab2's `model/kmax_deeplab.py` does.
"""

from typing import Any

import tensorflow as tf
import tf_keras

from deeplab_video import common
from deeplab_video.model import heads, pixel_decoder, transformer_decoder
from deeplab_video.model.backbones import factory
from deeplab_video.model.layers import resizing

# Pixel-decoder outputs the transformer decoder reads, at strides 32, 16 and 8.
_DECODER_STAGES = (
    pixel_decoder.DECODER_OS32,
    pixel_decoder.DECODER_OS16,
    pixel_decoder.DECODER_OS8,
)


def fold_frames(clip: tf.Tensor) -> tf.Tensor:
    """float [batch, num_frames, height, width, c] -> [batch * num_frames, height, width, c]."""
    folded = tf.reshape(clip, tf.concat([[-1], tf.shape(clip)[2:]], 0))
    folded.set_shape([None, *clip.shape[2:]])
    return folded


def unfold_frames(frames: tf.Tensor, num_frames: int | tf.Tensor) -> tf.Tensor:
    """float [batch * num_frames, h, w, c] -> [batch, num_frames, h, w, c]."""
    unfolded = tf.reshape(frames, tf.concat([[-1, num_frames], tf.shape(frames)[1:]], 0))
    static_frames = num_frames if isinstance(num_frames, int) else None
    unfolded.set_shape([None, static_frames, *frames.shape[1:]])
    return unfolded


def resize_clip(clip: tf.Tensor, size: tuple[Any, Any]) -> tf.Tensor:
    """Resizes float [batch, num_frames, h, w, c] bilinearly (aligned corners) to `size`."""
    num_frames = clip.shape[1] if clip.shape[1] is not None else tf.shape(clip)[1]
    return unfold_frames(resizing.resize_align_corners(fold_frames(clip), size), num_frames)


class VideoKMaX(tf_keras.Model):
    """Video-kMaX: clip [batch, T, H, W, 3] (0..255) -> tube masks, classes, embeddings."""

    def __init__(
        self,
        backbone: tf_keras.Model,
        pixel_decoder_layer: tf_keras.layers.Layer,
        transformer_decoder_layer: transformer_decoder.KMaXTransformerDecoder,
        prediction_head: heads.KMaXPredictionHead,
        semantic_head: heads.AuxiliarySemanticHead | None = None,
        input_mean: float = 127.5,
        input_std: float = 127.5,
        name: str = "video_kmax",
    ):
        """Initializes the model from built components.

        Args:
            backbone: maps normalised images to the `factory.ENDPOINTS` features.
            pixel_decoder_layer: maps backbone features to the `pixel_decoder` outputs.
            transformer_decoder_layer: the clip-kMaX decoder.
            prediction_head: the final head on the stride-4 pixel-decoder features.
            semantic_head: the auxiliary semantic head (training model only) or None.
            input_mean: subtracted from the 0..255 pixel values.
            input_std: divides the centred pixel values.

        Raises:
            ValueError: input_std is not positive.
        """
        super().__init__(name=name)
        if input_std <= 0:
            raise ValueError(f"input_std must be positive, got {input_std}")
        self._backbone = backbone
        self._pixel_decoder = pixel_decoder_layer
        self._transformer_decoder = transformer_decoder_layer
        self._prediction_head = prediction_head
        self._semantic_head = semantic_head
        self._input_mean = float(input_mean)
        self._input_std = float(input_std)

    @property
    def checkpoint_items(self) -> dict[str, tf_keras.layers.Layer]:
        """The components by name, for `tf.train.Checkpoint(**model.checkpoint_items)`."""
        items = {
            "backbone": self._backbone,
            "pixel_decoder": self._pixel_decoder,
            "transformer_decoder": self._transformer_decoder,
            "prediction_head": self._prediction_head,
        }
        if self._semantic_head is not None:
            items["semantic_head"] = self._semantic_head
        return items

    def call(self, clip: tf.Tensor, training: bool | None = None) -> dict[str, Any]:
        """Segments a clip into tubes.

        Args:
            clip: float32 [batch, num_frames, height, width, 3], pixel values 0..255; height
                and width of the form 32k + 1 give stride-4 outputs of size (height - 1) / 4
                + 1.
            training: whether batch norm, dropout and drop path run in training mode.

        Returns:
            A dict of float32 tensors (h, w: the stride-4 size, N queries, D embedding
            channels):
            common.PRED_MASK_LOGITS [batch, num_frames, h, w, N],
            common.PRED_CLASS_LOGITS [batch, N, num_classes + 1] (void last),
            common.PRED_QUERY_EMBEDDINGS [batch, N, D],
            common.PRED_MASK_EMBEDDINGS [batch, N, query_channels] (the mask head's input,
            the official model's `cluster_feature`),
            common.PRED_PIXEL_FEATURES [batch, num_frames, h, w, D] (L2-normalised),
            and, when the model has them (the training model),
            common.PRED_SEMANTIC_LOGITS [batch, num_frames, h, w, num_classes] and
            common.PRED_AUX_OUTPUTS: a list with one dict per decoder layer holding
            PRED_MASK_LOGITS (resized to [batch, num_frames, h, w, N]),
            PRED_CLASS_LOGITS and PRED_PIXEL_FEATURES (resized to [batch, num_frames, h,
            w, D], as the official Video-kMaX resizes them for its per-layer instance
            discrimination loss).
        """
        num_frames = clip.shape[1] if clip.shape[1] is not None else tf.shape(clip)[1]
        images = (fold_frames(tf.cast(clip, tf.float32)) - self._input_mean) / self._input_std
        features = self._backbone(images, training=training)
        decoded = self._pixel_decoder(features, training=training)
        class_features, mask_features, layer_predictions = self._transformer_decoder(
            [unfold_frames(decoded[key], num_frames) for key in _DECODER_STAGES],
            training=training,
        )
        pixels = unfold_frames(decoded[pixel_decoder.DECODER_OUTPUT], num_frames)
        outputs = dict(
            self._prediction_head(pixels, class_features, mask_features, training=training)
        )
        outputs[common.PRED_MASK_EMBEDDINGS] = mask_features
        size = (tf.shape(pixels)[2], tf.shape(pixels)[3])
        if pixels.shape[2] is not None and pixels.shape[3] is not None:
            size = (pixels.shape[2], pixels.shape[3])
        if self._semantic_head is not None:
            semantic_logits = self._semantic_head(
                features[factory.RES5],
                [features[factory.RES3], features[factory.RES2]],
                training=training,
            )
            outputs[common.PRED_SEMANTIC_LOGITS] = resize_clip(
                unfold_frames(semantic_logits, num_frames), size
            )
        if layer_predictions:
            outputs[common.PRED_AUX_OUTPUTS] = [
                {
                    common.PRED_MASK_LOGITS: resize_clip(
                        predictions[common.PRED_MASK_LOGITS], size
                    ),
                    common.PRED_CLASS_LOGITS: predictions[common.PRED_CLASS_LOGITS],
                    common.PRED_PIXEL_FEATURES: resize_clip(
                        predictions[common.PRED_PIXEL_FEATURES], size
                    ),
                }
                for predictions in layer_predictions
            ]
        return tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
