"""The map of the clip pipeline: records of a clip -> decoded, augmented element with targets.

Training clips are augmented (deeplab_video.data.augmentation: colour jitter, scale, crop,
flip, one draw per clip) and, when a donor clip comes with them, get panoptic copy-paste
from it (deeplab_video.data.copy_paste); evaluation clips are only padded. Both may first
be resized to range. Tube targets are computed last, from the final labels.
"""

from collections.abc import Callable

import tensorflow as tf

from deeplab_video import common, datasets
from deeplab_video.data import augmentation, copy_paste, tfrecord, tube_targets
from deeplab_video.protos import dataset_pb2


def _decode_clip(records: tf.Tensor, clip_length: int) -> dict[str, tf.Tensor]:
    """Decodes the records of one clip.

    Args:
        records: string [clip_length], serialized frames of one sequence.
        clip_length: T.

    Returns:
        A dict: common.IMAGE float32 [T, height, width, 3], common.PANOPTIC int32
        [T, height, width], common.SEQUENCE_ID string [], common.FRAME_INDEX int32 [T],
        common.ORIGINAL_SIZE int32 [2].
    """
    frames = [tfrecord.decode_frame(records[t]) for t in range(clip_length)]
    return {
        common.IMAGE: tf.cast(tf.stack([frame["image"] for frame in frames]), tf.float32),
        common.PANOPTIC: tf.stack([frame["panoptic"] for frame in frames]),
        common.SEQUENCE_ID: frames[0]["sequence_id"],
        common.FRAME_INDEX: tf.stack([frame["frame_index"] for frame in frames]),
        common.ORIGINAL_SIZE: tf.stack([frames[0]["height"], frames[0]["width"]]),
    }


def _donor_augmentations(
    options: dataset_pb2.AugmentationOptions,
) -> dataset_pb2.AugmentationOptions:
    """The clip's augmentation with the scale range multiplied by copy_paste_scale_ratio."""
    donor = dataset_pb2.AugmentationOptions()
    donor.CopyFrom(options)
    ratio = options.copy_paste_scale_ratio
    donor.min_scale_factor *= ratio
    donor.max_scale_factor *= ratio
    donor.scale_factor_step_size *= ratio
    return donor


def make_clip_parser(
    options: dataset_pb2.DatasetOptions, is_training: bool
) -> Callable[..., dict[str, tf.Tensor]]:
    """Returns the map function of the clip pipeline.

    The function takes (records string [T], seed int64 [2]) and, for copy-paste in
    training, a third argument: the donor clip's records string [T]. The clip is augmented
    with the seed as it would be without a donor; the donor's augmentation, the choice of
    pasted segments and the copy_paste_probability coin use seeds folded from it.

    Args:
        options: the dataset options (dataset, crop_size, clip_length, resize range,
            augmentations, tube settings).
        is_training: augment (else: pad only).

    Returns:
        The map function; its element dict is described in pipeline.build_clip_dataset.
    """
    descriptor = datasets.get_descriptor(options.dataset)
    clip_length = options.clip_length
    crop_size = (options.crop_size[0], options.crop_size[1])
    void_value = descriptor.ignore_label * descriptor.label_divisor
    donor_augmentations = _donor_augmentations(options.augmentations)

    def load(
        records: tf.Tensor, seed: tf.Tensor, augmentations: dataset_pb2.AugmentationOptions
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        clip = _decode_clip(records, clip_length)
        image, panoptic = augmentation.resize_to_range(
            clip[common.IMAGE],
            clip[common.PANOPTIC],
            options.min_resize_value,
            options.max_resize_value,
        )
        if is_training:
            image, panoptic = augmentation.augment_clip(
                image,
                panoptic,
                crop_size=crop_size,
                options=augmentations,
                label_pad_value=void_value,
                seed=seed,
            )
        else:
            image, panoptic = augmentation.pad_clip(
                image, panoptic, crop_size=crop_size, label_pad_value=void_value
            )
        return clip, image, panoptic

    def paste(
        image: tf.Tensor, panoptic: tf.Tensor, donor_records: tf.Tensor, seed: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        paste_seed = tf.random.experimental.stateless_fold_in(
            seed, augmentation.COPY_PASTE_SEED_TAG
        )
        donor_seed, choice_seed, coin_seed = tf.unstack(
            tf.random.experimental.stateless_split(paste_seed, num=3)
        )

        def pasted() -> tuple[tf.Tensor, tf.Tensor]:
            _, donor_image, donor_panoptic = load(donor_records, donor_seed, donor_augmentations)
            return copy_paste.paste_clip(
                image,
                panoptic,
                donor_image,
                donor_panoptic,
                num_classes=descriptor.num_classes,
                thing_ids=descriptor.thing_ids,
                label_divisor=descriptor.label_divisor,
                seed=choice_seed,
            )

        coin = tf.random.stateless_uniform([], coin_seed)
        applied = coin < options.augmentations.copy_paste_probability
        return tf.cond(applied, pasted, lambda: (image, panoptic))

    def parse(
        records: tf.Tensor, seed: tf.Tensor, donor_records: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        clip, image, panoptic = load(records, seed, options.augmentations)
        if donor_records is not None:
            image, panoptic = paste(image, panoptic, donor_records, seed)
        element = {
            **clip,
            common.IMAGE: image,
            common.PANOPTIC: panoptic,
            common.SEMANTIC: tf.math.floordiv(panoptic, descriptor.label_divisor),
        }
        element.update(
            tube_targets.compute_tube_targets(
                panoptic,
                num_classes=descriptor.num_classes,
                thing_ids=descriptor.thing_ids,
                label_divisor=descriptor.label_divisor,
                max_tubes=options.max_tubes_per_clip,
                stride=options.tube_mask_stride,
            )
        )
        return element

    return parse
