"""Tests for deeplab_video.config: parsing, validation and error locations."""

import os

import pytest

from deeplab_video import common, config, datasets
from tests import conftest

ALL_CONFIGS = sorted(conftest.CONFIG_DIR.glob("**/*.textproto"))

VALID = """experiment_name: "t"
model_options {
  num_classes: 6
  backbone {
    name: "resnet50"
  }
}
train_dataset_options {
  dataset: "synthetic"
  file_pattern: "a/*.tfrecord"
  crop_size: 97
  crop_size: 129
  clip_length: 2
}
evaluator_options {
  memory_buffer {
    similarity_threshold: 0.7
  }
}
"""


def test_every_shipped_config_loads():
    assert len(ALL_CONFIGS) >= 14
    for path in ALL_CONFIGS:
        options = config.load_config(path)
        assert options.model_options.num_classes > 0, path


def test_required_paths_exist():
    for name in ("kitti_step/axial_r50.textproto", "kitti_step/resnet50_online.textproto"):
        assert (conftest.CONFIG_DIR / name).exists()
    for dataset in ("kitti_step", "vipseg"):
        for backbone in ("resnet50", "axial_r50", "convnext_l"):
            for clip_length, suffix in ((1, "_online"), (2, "")):
                options = config.load_config(
                    conftest.CONFIG_DIR / dataset / f"{backbone}{suffix}.textproto"
                )
                assert options.train_dataset_options.clip_length == clip_length
                assert options.eval_dataset_options.clip_length == clip_length
                descriptor = datasets.get_descriptor(options.train_dataset_options.dataset)
                assert options.model_options.num_classes == descriptor.num_classes


def test_backbone_names_match_model_registry():
    factory = pytest.importorskip("deeplab_video.model.backbones.factory")
    assert set(factory.registered_names()) == set(config.BACKBONE_NAMES)


def test_valid_config_fills_repeated_defaults(write_config):
    options = config.load_config(write_config(VALID))
    assert list(options.model_options.pixel_decoder.num_blocks) == [1, 5, 1, 1]
    assert list(options.model_options.pixel_decoder.channels) == [512, 256, 128, 64]
    assert list(options.model_options.transformer_decoder.num_layers_per_stage) == [2, 2, 2]
    assert list(options.evaluator_options.metrics.vpq_window_sizes) == [1, 2, 3, 4]
    assert options.model_options.transformer_decoder.num_queries == 128


def test_syntax_error_names_file_and_line(write_config):
    path = write_config(VALID.replace('name: "resnet50"', 'name "resnet50" {'))
    with pytest.raises(config.ConfigError) as error:
        config.load_config(path)
    assert error.value.line == 5
    assert str(path) in str(error.value)


def test_unknown_field_names_line(write_config):
    path = write_config(VALID.replace("  num_classes: 6\n", "  num_classes: 6\n  num_clases: 3\n"))
    with pytest.raises(config.ConfigError) as error:
        config.load_config(path)
    assert error.value.line == 4
    assert "num_clases" in str(error.value)


def test_removed_eval_clip_stride_is_rejected(write_config):
    # Evaluation always joins clips on one shared frame (common.clip_stride): a stride
    # field that nothing would honour is refused, not ignored.
    path = write_config(
        VALID.replace("  clip_length: 2\n", "  clip_length: 2\n  eval_clip_stride: 2\n", 1)
    )
    with pytest.raises(config.ConfigError, match="eval_clip_stride"):
        config.load_config(path)


@pytest.mark.parametrize("clip_length, stride", [(1, 1), (2, 1), (3, 2)])
def test_clip_stride_shares_one_frame(clip_length, stride):
    assert common.clip_stride(clip_length) == stride


@pytest.mark.parametrize(
    "old, new, field, line",
    [
        ('name: "resnet50"', 'name: "resnet51"', "model_options.backbone.name", 5),
        ("clip_length: 2", "clip_length: 0", "train_dataset_options.clip_length", 13),
        ("crop_size: 97", "crop_size: 96", "train_dataset_options.crop_size", 11),
        (
            "similarity_threshold: 0.7",
            "similarity_threshold: 1.5",
            "evaluator_options.memory_buffer.similarity_threshold",
            17,
        ),
        ("num_classes: 6", "num_classes: 19", "model_options.num_classes", 3),
        ('  file_pattern: "a/*.tfrecord"\n', "", "train_dataset_options.file_pattern", 8),
    ],
)
def test_invalid_values_name_field_and_line(write_config, old, new, field, line):
    text = VALID.replace(old, new)
    assert text != VALID
    path = write_config(text)
    with pytest.raises(config.ConfigError) as error:
        config.load_config(path)
    assert error.value.field == field
    assert error.value.line == line
    assert f"{path}:{line}: {field}:" in str(error.value)


@pytest.mark.parametrize("clip_length, valid", [(1, True), (2, True), (3, False)])
def test_aligned_output_frames_need_clips_that_tile_the_video(write_config, clip_length, valid):
    eval_dataset = (
        'eval_dataset_options {\n  dataset: "synthetic"\n  file_pattern: "b/*.tfrecord"\n'
        "  crop_size: 97\n  crop_size: 129\n"
        f"  clip_length: {clip_length}\n}}\nevaluator_options {{\n"
    )
    text = VALID.replace("evaluator_options {\n", eval_dataset).replace(
        "  memory_buffer {",
        '  stitching {\n    output_frames: "aligned_clips"\n  }\n  memory_buffer {',
    )
    path = write_config(text)
    if valid:
        assert config.load_config(path).evaluator_options.stitching.output_frames == "aligned_clips"
        return
    with pytest.raises(config.ConfigError, match="skip frames") as error:
        config.load_config(path)
    assert error.value.field == "evaluator_options.stitching.output_frames"


@pytest.mark.parametrize(
    "field, value",
    [
        ("stitching.output_frames", "last_clip"),
        ("memory_buffer.new_object_insertion", "never"),
        ("memory_buffer.embedding_output", "pixel_features"),
    ],
)
def test_unknown_tracking_choices_are_rejected(write_config, field, value):
    message, name = field.split(".")
    block = f'  {message} {{\n    {name}: "{value}"\n  }}\n'
    text = VALID.replace("  memory_buffer {\n    similarity_threshold: 0.7\n  }\n", block)
    assert text != VALID
    with pytest.raises(config.ConfigError, match=value) as error:
        config.load_config(write_config(text))
    assert error.value.field == f"evaluator_options.{field}"


@pytest.mark.parametrize(
    "augmentations, field",
    [
        ("frame_sampling_range: 5 copy_paste_probability: 1.0", None),
        ("color_jitter { brightness_delta: 32 hue_delta: 0.1 }", None),
        ("frame_sampling_range: -1", "frame_sampling_range"),
        ("frame_sampling_range: 3", None),
        ("copy_paste_probability: 1.5", "copy_paste_probability"),
        ("copy_paste_scale_ratio: 0", "copy_paste_scale_ratio"),
        ("color_jitter { probability: -0.1 }", "color_jitter.probability"),
        ("color_jitter { brightness_delta: -1 }", "color_jitter.brightness_delta"),
        ("color_jitter { min_contrast_factor: 2 }", "color_jitter.min_contrast_factor"),
        ("color_jitter { max_saturation_factor: 0.5 }", "color_jitter.min_saturation_factor"),
        ("color_jitter { hue_delta: 0.6 }", "color_jitter.hue_delta"),
    ],
)
def test_training_clip_augmentations_are_checked(write_config, augmentations, field):
    text = VALID.replace(
        "  clip_length: 2\n", f"  clip_length: 2\n  augmentations {{ {augmentations} }}\n"
    )
    path = write_config(text)
    if field is None:
        config.load_config(path)
        return
    with pytest.raises(config.ConfigError) as error:
        config.load_config(path)
    assert error.value.field == f"train_dataset_options.augmentations.{field}"


def test_frame_sampling_range_needs_clip_length_and_replaces_frame_step(write_config):
    text = VALID.replace(
        "clip_length: 2", "clip_length: 3\n  augmentations { frame_sampling_range: 1 }"
    )
    with pytest.raises(config.ConfigError, match="at least clip_length - 1 = 2"):
        config.load_config(write_config(text))
    text = VALID.replace(
        "clip_length: 2", "frame_step: 2\n  augmentations { frame_sampling_range: 5 }"
    )
    with pytest.raises(config.ConfigError, match="replaces frame_step"):
        config.load_config(write_config(text))


def test_stem_stage_of_a_resnet_is_for_inference_only(write_config):
    stem = (
        '  pixel_decoder {\n    num_blocks: [1, 5, 1, 1, 1]\n    block_types: ["axial", "axial",'
        ' "bottleneck", "bottleneck", "bottleneck"]\n    channels: [512, 256, 128, 64, 32]\n  }\n'
    )
    text = VALID.replace("  backbone {", stem + "  backbone {")
    with pytest.raises(config.ConfigError, match="fifth .stem. stage on resnet50 gives stride-2"):
        config.load_config(write_config(text))
    convnext = text.replace('name: "resnet50"', 'name: "convnext_tiny"')
    assert len(config.load_config(write_config(convnext)).model_options.pixel_decoder.channels) == 5
    inference = text.replace("train_dataset_options", "eval_dataset_options")
    assert (
        config.load_config(write_config(inference)).model_options.pixel_decoder.num_blocks[4] == 1
    )


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load_config(tmp_path / "missing.textproto")


def test_placeholders_expanded_or_rejected(write_config, monkeypatch):
    text = VALID.replace('"a/*.tfrecord"', '"${TRAIN_SET}"') + "# comment with ${NOT_SET}\n"
    path = write_config(text)
    monkeypatch.delenv("TRAIN_SET", raising=False)
    with pytest.raises(config.ConfigError, match=r"\$\{TRAIN_SET\} is not set") as error:
        config.load_config(path)
    assert error.value.line == 10
    monkeypatch.setenv("TRAIN_SET", "/data/train-*.tfrecord")
    options = config.load_config(path)
    assert list(options.train_dataset_options.file_pattern) == ["/data/train-*.tfrecord"]
    assert "NOT_SET" not in os.environ


def test_batch_size_divisible_by_replicas(write_config):
    options = config.load_config(write_config(VALID.replace("clip_length: 2", "batch_size: 6")))
    config.validate_batch_size(options.train_dataset_options, 3)
    with pytest.raises(ValueError, match="not divisible by the 4 replicas"):
        config.validate_batch_size(options.train_dataset_options, 4)


def test_field_lines_handles_lists_and_strings():
    lines = config.field_lines('a { b: [1, 2] c: "x" "y" }\nd: 3\ne { f { g: 1 } }\n')
    assert lines == {"a": 1, "a.b": 1, "a.c": 1, "d": 2, "e": 3, "e.f": 3, "e.f.g": 3}
