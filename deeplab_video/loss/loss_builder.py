"""Builds the Video-kMaX training loss from `LossOptions`.

`VideoKMaXLoss(loss_options, num_classes, ignore_label)(targets, predictions)` returns a dict
of per-sample float32 [batch] losses keyed by the `common.LOSS_*` names, already weighted,
plus `common.LOSS_TOTAL`, their sum. The names are known before the first step
(`get_loss_names`), so a trainer can create its metrics up front.

Terms (all on tubes: the T frames of a clip are one pixel set):
  - PQ-style loss (mask dice term + class term), on every decoder layer;
  - mask-ID cross-entropy, on every decoder layer;
  - pixel-wise instance discrimination, on the final pixel features;
  - auxiliary semantic cross-entropy, when the model has the auxiliary semantic head.
With deep supervision the earlier decoder layers (`common.PRED_AUX_OUTPUTS`) add their PQ-style
and mask-ID terms to the same keys; with share_final_matching they reuse the last layer's
Hungarian matching, as Video-kMaX does.

References:
  kMaX-DeepLab: "k-means Mask Transformer", ECCV 2022.
  Video-kMaX: "A Simple Unified Approach for Online and Near-Online Video Panoptic
  Segmentation", WACV 2024.
"""

from collections.abc import Mapping, Sequence

import tensorflow as tf

from deeplab_video import common
from deeplab_video.loss import (
    instance_discrimination,
    loss_utils,
    mask_id_loss,
    pq_style_loss,
    semantic_loss,
    tube_matching,
)
from deeplab_video.protos import trainer_pb2

_REQUIRED_TARGETS = (
    common.TUBE_MASKS,
    common.TUBE_CLASSES,
    common.TUBE_VALID,
    common.VOID_MASK,
    common.SEMANTIC_STRIDED,
)
_REQUIRED_PREDICTIONS = (
    common.PRED_MASK_LOGITS,
    common.PRED_CLASS_LOGITS,
    common.PRED_PIXEL_FEATURES,
)


def _validate_options(options: trainer_pb2.LossOptions, num_classes: int) -> None:
    """Raises ValueError naming the first LossOptions field that cannot work."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}.")
    for name in (
        "pq_style_weight",
        "pq_style_class_term_weight",
        "mask_id_cross_entropy_weight",
        "instance_discrimination_weight",
        "auxiliary_semantic_weight",
        "pq_style_weight_floor",
        "instance_discrimination_sample_k",
        "auxiliary_semantic_sample_k",
        "instance_discrimination_temperature",
        "auxiliary_semantic_sample_temperature",
        "pq_style_focal_alpha",
        "small_instance_weight",
        "small_instance_area",
    ):
        if getattr(options, name) < 0:
            raise ValueError(f"loss_options.{name} must be >= 0, got {getattr(options, name)}.")
    if options.instance_discrimination_logit_temperature <= 0:
        raise ValueError("loss_options.instance_discrimination_logit_temperature must be > 0.")
    for name in ("dice_epsilon", "dice_smooth"):
        if getattr(options, name) <= 0:
            raise ValueError(f"loss_options.{name} must be > 0, got {getattr(options, name)}.")
    if not 0.0 < options.auxiliary_semantic_top_k_percent <= 1.0:
        raise ValueError(
            "loss_options.auxiliary_semantic_top_k_percent must lie in (0, 1], got "
            f"{options.auxiliary_semantic_top_k_percent}."
        )


def _check_keys(tensors: Mapping[str, object], required: Sequence[str], what: str) -> None:
    missing = [key for key in required if key not in tensors]
    if missing:
        raise KeyError(f"The {what} lack {missing}; got keys {sorted(tensors)}.")


def _check_same_clip_shape(reference: tf.Tensor, other: tf.Tensor, name: str) -> None:
    """Raises ValueError when the frame and pixel sizes of two clip tensors differ."""
    if not reference.shape[1:4].is_compatible_with(other.shape[1:4]):
        raise ValueError(
            f"{name} has [num_frames, height, width] {other.shape[1:4]}, but the ground-truth "
            f"tubes have {reference.shape[1:4]}; they must be at the same stride."
        )


class VideoKMaXLoss:
    """The Video-kMaX loss: PQ-style, mask-ID, instance discrimination, auxiliary semantic.

    Holds no state: calling it inside `tf.function`, under XLA or in a `tf.distribute`
    replica is safe. All inputs are cast to float32 first, so it also serves mixed precision.
    """

    def __init__(
        self,
        loss_options: trainer_pb2.LossOptions,
        num_classes: int,
        ignore_label: int,
        auxiliary_semantic_head: bool = True,
    ):
        """Initialises the loss.

        Args:
          loss_options: the LossOptions proto (weights, sampling, matching options).
          num_classes: number of semantic classes without void; class logits have
            num_classes + 1 entries.
          ignore_label: label of void pixels in common.SEMANTIC_STRIDED.
          auxiliary_semantic_head: whether the model predicts common.PRED_SEMANTIC_LOGITS
            in training (ModelOptions' auxiliary_semantic_head); without it the auxiliary
            semantic term is off.

        Raises:
          ValueError: if an option is out of range.
        """
        _validate_options(loss_options, num_classes)
        self._options = loss_options
        self._num_classes = num_classes
        self._ignore_label = ignore_label
        self._use_semantic = auxiliary_semantic_head and loss_options.auxiliary_semantic_weight > 0
        weights = {
            common.LOSS_PQ_STYLE: loss_options.pq_style_weight,
            common.LOSS_MASK_ID_CROSS_ENTROPY: loss_options.mask_id_cross_entropy_weight,
            common.LOSS_INSTANCE_DISCRIMINATION: loss_options.instance_discrimination_weight,
            common.LOSS_AUXILIARY_SEMANTIC: (
                loss_options.auxiliary_semantic_weight if self._use_semantic else 0.0
            ),
        }
        self._weights = {name: weight for name, weight in weights.items() if weight > 0}

    def get_loss_names(self) -> list[str]:
        """Returns the keys of the loss dict: the terms with a positive weight, then total."""
        return [*self._weights, common.LOSS_TOTAL]

    def __call__(
        self, targets: Mapping[str, tf.Tensor], predictions: Mapping[str, object]
    ) -> dict[str, tf.Tensor]:
        """Computes the weighted per-sample losses of a batch of clips.

        Args:
          targets: dict with common.TUBE_MASKS float32 [batch, num_frames, h, w, num_tubes],
            common.TUBE_CLASSES int32 [batch, num_tubes], common.TUBE_VALID float32
            [batch, num_tubes], common.VOID_MASK float32 [batch, num_frames, h, w] and
            common.SEMANTIC_STRIDED int32 [batch, num_frames, h, w].
          predictions: dict with common.PRED_MASK_LOGITS float [batch, num_frames, h, w,
            num_queries], common.PRED_CLASS_LOGITS float [batch, num_queries,
            num_classes + 1], common.PRED_PIXEL_FEATURES float [batch, num_frames, h, w,
            channels] (L2-normalised), optionally common.PRED_SEMANTIC_LOGITS float
            [batch, num_frames, h, w, num_classes] and common.PRED_AUX_OUTPUTS, a list of
            dicts with the mask logits, class logits and pixel features of earlier decoder
            layers (at the final layer's size).

        Returns:
          Dict from `get_loss_names()` to float32 [batch] losses; common.LOSS_TOTAL is
          their sum.

        Raises:
          KeyError: if a required input is missing.
          ValueError: if shapes disagree, or the semantic logits are needed but absent.
          RuntimeError: if the computed keys differ from the published names.
        """
        _check_keys(targets, _REQUIRED_TARGETS, "targets")
        _check_keys(predictions, _REQUIRED_PREDICTIONS, "predictions")
        options = self._options
        tube_masks = tf.cast(targets[common.TUBE_MASKS], tf.float32)
        clip = tube_matching.prepare_targets(
            tube_masks,
            tf.cast(targets[common.TUBE_CLASSES], tf.int32),
            tf.cast(targets[common.TUBE_VALID], tf.float32),
            tf.cast(targets[common.VOID_MASK], tf.float32),
        )
        losses = {}
        if (
            common.LOSS_PQ_STYLE in self._weights
            or common.LOSS_MASK_ID_CROSS_ENTROPY in self._weights
        ):
            losses.update(self._mask_losses(clip, tube_masks, predictions))
        if common.LOSS_INSTANCE_DISCRIMINATION in self._weights:
            losses[common.LOSS_INSTANCE_DISCRIMINATION] = tf.add_n(
                [
                    instance_discrimination.instance_discrimination_loss(
                        features,
                        clip.gt_masks,
                        clip.pixel_valid,
                        sample_k=options.instance_discrimination_sample_k,
                        sample_temperature=options.instance_discrimination_temperature,
                        temperature=options.instance_discrimination_logit_temperature,
                    )
                    for features in self._layer_pixel_features(tube_masks, predictions)
                ]
            )
        if common.LOSS_AUXILIARY_SEMANTIC in self._weights:
            losses[common.LOSS_AUXILIARY_SEMANTIC] = self._semantic_loss(
                clip, tube_masks, targets, predictions
            )
        losses = {name: loss * self._weights[name] for name, loss in losses.items()}
        losses[common.LOSS_TOTAL] = tf.add_n(list(losses.values()))
        if sorted(losses) != sorted(self.get_loss_names()):
            raise RuntimeError(
                f"Computed losses {sorted(losses)} differ from the published names "
                f"{sorted(self.get_loss_names())}."
            )
        return losses

    def _supervised_outputs(
        self, predictions: Mapping[str, object]
    ) -> list[tuple[str, Mapping[str, object]]]:
        """(name, outputs) of every supervised prediction: the final one first, then the
        earlier decoder layers' under deep supervision."""
        layer_outputs = [("predictions", predictions)]
        if self._options.deep_supervision:
            layer_outputs += [
                (f"aux_outputs[{index}]", outputs)
                for index, outputs in enumerate(predictions.get(common.PRED_AUX_OUTPUTS) or [])
            ]
        return layer_outputs

    def _layer_pixel_features(
        self, tube_masks: tf.Tensor, predictions: Mapping[str, object]
    ) -> list[tf.Tensor]:
        """Flat pixel features float32 [batch, num_pixels, channels] per supervised
        prediction: instance discrimination, like DeepLab2's kMaX and the official
        criterion, is summed over all of them."""
        layers = []
        for what, outputs in self._supervised_outputs(predictions):
            _check_keys(outputs, (common.PRED_PIXEL_FEATURES,), what)
            features = tf.cast(outputs[common.PRED_PIXEL_FEATURES], tf.float32)
            _check_same_clip_shape(tube_masks, features, f"{what} pixel features")
            layers.append(loss_utils.flatten_clip(features))
        return layers

    def _decoder_layers(
        self, tube_masks: tf.Tensor, predictions: Mapping[str, object]
    ) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """Returns (flat mask logits, class logits) per supervised layer, the last first."""
        layers = []
        for what, outputs in self._supervised_outputs(predictions):
            _check_keys(outputs, (common.PRED_MASK_LOGITS, common.PRED_CLASS_LOGITS), what)
            mask_logits = tf.cast(outputs[common.PRED_MASK_LOGITS], tf.float32)
            class_logits = tf.cast(outputs[common.PRED_CLASS_LOGITS], tf.float32)
            _check_same_clip_shape(tube_masks, mask_logits, f"{what} mask logits")
            if class_logits.shape[-1] != self._num_classes + 1:
                raise ValueError(
                    f"{what} class logits have {class_logits.shape[-1]} classes; expected "
                    f"num_classes + 1 = {self._num_classes + 1} (the last one is void)."
                )
            layers.append((loss_utils.flatten_clip(mask_logits), class_logits))
        return layers

    def _mask_losses(
        self,
        clip: tube_matching.ClipTargets,
        tube_masks: tf.Tensor,
        predictions: Mapping[str, object],
    ) -> dict[str, tf.Tensor]:
        """PQ-style and mask-ID losses summed over the supervised decoder layers."""
        options = self._options
        floor = options.pq_style_weight_floor
        pq_total, mask_id_total = 0.0, 0.0
        final_match = None
        for mask_logits, class_logits in self._decoder_layers(tube_masks, predictions):
            if final_match is not None and options.share_final_matching:
                match = final_match
            else:
                match = tube_matching.match_tubes(
                    mask_logits, class_logits, clip, options.dice_epsilon
                )
                final_match = match if final_match is None else final_match
            dice_term = pq_style_loss.mask_dice_term(
                mask_logits, match, options.pq_style_focal_alpha, floor, options.dice_smooth
            )
            class_term = pq_style_loss.class_term(
                class_logits, match, options.pq_style_focal_alpha, floor
            )
            pq_total += dice_term + options.pq_style_class_term_weight * class_term
            mask_id_total += mask_id_loss.mask_id_cross_entropy(mask_logits, match)
        losses = {
            common.LOSS_PQ_STYLE: pq_total,
            common.LOSS_MASK_ID_CROSS_ENTROPY: mask_id_total,
        }
        return {name: loss for name, loss in losses.items() if name in self._weights}

    def _semantic_loss(
        self,
        clip: tube_matching.ClipTargets,
        tube_masks: tf.Tensor,
        targets: Mapping[str, tf.Tensor],
        predictions: Mapping[str, object],
    ) -> tf.Tensor:
        """The auxiliary semantic loss on the final semantic logits."""
        if common.PRED_SEMANTIC_LOGITS not in predictions:
            raise ValueError(
                f"auxiliary_semantic_weight > 0 but the predictions lack "
                f"'{common.PRED_SEMANTIC_LOGITS}'; build the model with its auxiliary "
                "semantic head, or pass auxiliary_semantic_head=False to the loss."
            )
        options = self._options
        logits = tf.cast(predictions[common.PRED_SEMANTIC_LOGITS], tf.float32)
        _check_same_clip_shape(tube_masks, logits, common.PRED_SEMANTIC_LOGITS)
        if logits.shape[-1] != self._num_classes:
            raise ValueError(
                f"Semantic logits have {logits.shape[-1]} classes; expected {self._num_classes}."
            )
        pixel_weights = semantic_loss.small_instance_pixel_weights(
            clip.gt_masks,
            num_frames=tube_masks.shape[1],
            min_area=options.small_instance_area,
            small_weight=options.small_instance_weight,
        )
        sampling_logits = loss_utils.inverse_area_sampling_logits(
            clip.gt_masks, clip.pixel_valid, options.auxiliary_semantic_sample_temperature
        )
        return semantic_loss.auxiliary_semantic_loss(
            loss_utils.flatten_clip(logits),
            loss_utils.flatten_clip(tf.cast(targets[common.SEMANTIC_STRIDED], tf.int32)),
            pixel_weights,
            sampling_logits,
            sample_k=options.auxiliary_semantic_sample_k,
            top_k_percent=options.auxiliary_semantic_top_k_percent,
            ignore_label=self._ignore_label,
        )
