"""Loads and validates textproto experiment configs into `ExperimentOptions`.

`load_config(path)` reads a textproto (see configs/), expands `${VAR}` placeholders from the
environment, parses it, fills the defaults of repeated fields (proto2 has none), and
validates every value. Every failure is a `ConfigError` that names the file, the line and
the field path, e.g.

    configs/x.textproto:12: train_dataset_options.crop_size: 384 - 1 is not divisible by 32
"""

import dataclasses
import os
import re
from collections.abc import Callable

from google.protobuf import text_format

from deeplab_video import common, datasets
from deeplab_video.protos import config_pb2

# Backbones `deeplab_video.model.backbones` registers (tests check the two agree).
BACKBONE_NAMES = (
    "resnet50",
    "axial_resnet50",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
)
CROSS_ATTENTION_KINDS = ("kmeans", "softmax", "latent_memory")
PIXEL_DECODER_BLOCK_TYPES = ("axial", "bottleneck")
OPTIMIZERS = ("adamw", "adam", "sgd")
MIXED_PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
RESTORE_MODES = ("all", "backbone")
POST_PROCESSING_MODES = ("maskwise", "pixelwise", "pixelwise_official")
OVERLAP_MEASURES = ("iou", "dice")
MEMORY_BUFFER_KINDS = ("location_aware", "naive", "none")
BOX_DISTANCES = ("l2", "squared_l2")
ASSIGNMENTS = ("hungarian", "argmax")
NEW_OBJECT_INSERTIONS = ("always", "when_no_candidates")
EMBEDDING_OUTPUTS = (common.PRED_QUERY_EMBEDDINGS, common.PRED_MASK_EMBEDDINGS)
OUTPUT_FRAMES = ("first_clip", "aligned_clips")
# The backbone's output stride: every crop side minus one must be divisible by it.
OUTPUT_STRIDE = 32
# The stride of the mask logits (and of the ground-truth tube masks).
MASK_STRIDE = 4

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Defaults of repeated fields, which proto2 cannot declare: (field path, default values).
REPEATED_DEFAULTS = (
    ("model_options.pixel_decoder.num_blocks", (1, 5, 1, 1)),
    ("model_options.pixel_decoder.block_types", ("axial", "axial", "bottleneck", "bottleneck")),
    ("model_options.pixel_decoder.channels", (512, 256, 128, 64)),
    ("model_options.transformer_decoder.num_layers_per_stage", (2, 2, 2)),
    ("evaluator_options.metrics.vpq_window_sizes", (1, 2, 3, 4)),
)


class ConfigError(ValueError):
    """A config file that cannot be parsed or holds an invalid value.

    Attributes:
        path: the config file.
        line: 1-based line of the offending text (None when the field is absent).
        field: dotted path of the offending field (None for syntax errors).
    """

    def __init__(self, path: str, line: int | None, field: str | None, message: str):
        self.path = path
        self.line = line
        self.field = field
        location = f"{path}:{line}" if line is not None else path
        subject = f"{field}: " if field else ""
        super().__init__(f"{location}: {subject}{message}")


@dataclasses.dataclass
class _Invalid:
    field: str
    message: str


def load_config(path: str | os.PathLike) -> config_pb2.ExperimentOptions:
    """Reads, parses and validates one experiment config.

    Args:
        path: a textproto file of `deeplab_video.ExperimentOptions`.

    Returns:
        The validated options, with repeated-field defaults filled in.

    Raises:
        ConfigError: the file is missing, has a syntax error or an unknown field, uses an
            unset `${VAR}` placeholder, or holds an invalid value.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, None, None, f"cannot read config file: {e.strerror}") from e
    text = _expand_placeholders(path, text)
    options = config_pb2.ExperimentOptions()
    try:
        text_format.Parse(text, options)
    except text_format.ParseError as e:
        line = e.GetLine() if e.GetLine() else None
        message = re.sub(r"^\d+:\d+ : ", "", str(e))
        raise ConfigError(path, line, None, message) from e
    fill_repeated_defaults(options)
    problems = validate(options)
    if problems:
        lines = field_lines(text)
        first = problems[0]
        raise ConfigError(path, _line_of(lines, first.field), first.field, first.message)
    return options


def fill_repeated_defaults(options: config_pb2.ExperimentOptions) -> None:
    """Fills empty repeated fields with the defaults of REPEATED_DEFAULTS, in place."""
    for field_path, default in REPEATED_DEFAULTS:
        *parents, name = field_path.split(".")
        message = options
        for parent in parents:
            message = getattr(message, parent)
        if not getattr(message, name):
            getattr(message, name).extend(default)


def validate(options: config_pb2.ExperimentOptions) -> list[_Invalid]:
    """Checks every constrained value; returns the problems found (empty when valid)."""
    problems: list[_Invalid] = []

    def check(condition: bool, field: str, message: str) -> None:
        if not condition:
            problems.append(_Invalid(field, message))

    _validate_model(options, check)
    for name in ("train_dataset_options", "eval_dataset_options"):
        if options.HasField(name):
            _validate_dataset(getattr(options, name), name, check)
    _validate_trainer(options.trainer_options, check)
    _validate_evaluator(options.evaluator_options, check)
    _validate_output_frames(options, check)
    return problems


def validate_batch_size(options: config_pb2.DatasetOptions, num_replicas: int) -> None:
    """Raises ValueError when the global batch does not split evenly over replicas."""
    if options.batch_size % num_replicas:
        raise ValueError(
            f"batch_size {options.batch_size} of dataset '{options.dataset}' is not "
            f"divisible by the {num_replicas} replicas of the distribution strategy; use a "
            f"multiple of {num_replicas}."
        )


def _validate_model(options: config_pb2.ExperimentOptions, check: Callable) -> None:
    model = options.model_options
    check(
        model.backbone.name in BACKBONE_NAMES,
        "model_options.backbone.name",
        f"unknown backbone '{model.backbone.name}'; expected one of {', '.join(BACKBONE_NAMES)}",
    )
    check(model.num_classes > 0, "model_options.num_classes", "must be set to a positive count")
    for dataset_field in ("train_dataset_options", "eval_dataset_options"):
        name = getattr(options, dataset_field).dataset
        if name in datasets.DATASETS:
            expected = datasets.get_descriptor(name).num_classes
            check(
                model.num_classes == expected,
                "model_options.num_classes",
                f"{model.num_classes} does not match the {expected} classes of dataset '{name}'",
            )
    _check_probability(model.backbone.drop_path_keep_prob, "model_options.backbone", check)
    for field in ("width_multiplier", "depth_multiplier"):
        value = getattr(model.backbone, field)
        check(value > 0, f"model_options.backbone.{field}", f"must be positive, got {value}")
    decoder = model.pixel_decoder
    lengths = {len(decoder.num_blocks), len(decoder.block_types), len(decoder.channels)}
    check(
        lengths in ({4}, {5}),
        "model_options.pixel_decoder",
        "num_blocks, block_types and channels need one entry per stage: 4 (strides 32, 16, "
        "8, 4) or 5 (and the backbone's stem output)",
    )
    # The ResNets' stem is at stride 2: a stem stage makes stride-2 masks, which the
    # training targets (tube_mask_stride 4) do not match. ConvNeXt's stem is at stride 4.
    check(
        lengths != {5}
        or model.backbone.name.startswith("convnext")
        or not options.HasField("train_dataset_options"),
        "model_options.pixel_decoder",
        f"a fifth (stem) stage on {model.backbone.name} gives stride-2 masks; training "
        f"needs stride {MASK_STRIDE}: use it for inference (DeepLab2's Cityscapes weights)",
    )
    for block_type in decoder.block_types:
        check(
            block_type in PIXEL_DECODER_BLOCK_TYPES,
            "model_options.pixel_decoder.block_types",
            f"unknown block type '{block_type}'; expected axial or bottleneck",
        )
    transformer = model.transformer_decoder
    check(
        transformer.cross_attention in CROSS_ATTENTION_KINDS,
        "model_options.transformer_decoder.cross_attention",
        f"unknown cross-attention '{transformer.cross_attention}'; expected one of "
        + ", ".join(CROSS_ATTENTION_KINDS),
    )
    check(
        len(transformer.num_layers_per_stage) == 3,
        "model_options.transformer_decoder.num_layers_per_stage",
        "needs one entry per stride (32, 16, 8)",
    )
    check(
        transformer.num_queries > 0,
        "model_options.transformer_decoder.num_queries",
        "must be positive",
    )
    check(
        transformer.query_channels % transformer.num_heads == 0,
        "model_options.transformer_decoder.num_heads",
        f"query_channels {transformer.query_channels} is not divisible by num_heads "
        f"{transformer.num_heads}",
    )
    check(
        model.restore_mode in RESTORE_MODES,
        "model_options.restore_mode",
        f"unknown restore mode '{model.restore_mode}'; expected all or backbone",
    )


def _validate_dataset(dataset: config_pb2.DatasetOptions, name: str, check: Callable) -> None:
    check(
        dataset.dataset in datasets.DATASETS,
        f"{name}.dataset",
        f"unknown dataset '{dataset.dataset}'; expected one of {', '.join(datasets.DATASETS)}",
    )
    check(bool(dataset.file_pattern), f"{name}.file_pattern", "at least one pattern is required")
    check(dataset.clip_length >= 1, f"{name}.clip_length", "must be at least 1")
    check(dataset.batch_size >= 1, f"{name}.batch_size", "must be at least 1")
    check(len(dataset.crop_size) == 2, f"{name}.crop_size", "needs [height, width]")
    for side in dataset.crop_size:
        check(
            side > OUTPUT_STRIDE and (side - 1) % OUTPUT_STRIDE == 0,
            f"{name}.crop_size",
            f"{side} - 1 is not divisible by the output stride {OUTPUT_STRIDE} "
            f"(use e.g. {((side - 1) // OUTPUT_STRIDE + 1) * OUTPUT_STRIDE + 1})",
        )
    check(
        dataset.tube_mask_stride == MASK_STRIDE,
        f"{name}.tube_mask_stride",
        f"must equal the model's mask stride {MASK_STRIDE}",
    )
    check(dataset.frame_step >= 1, f"{name}.frame_step", "must be at least 1")
    check(dataset.max_tubes_per_clip >= 1, f"{name}.max_tubes_per_clip", "must be >= 1")
    _validate_augmentations(dataset, f"{name}.augmentations", check)


def _validate_augmentations(
    dataset: config_pb2.DatasetOptions, prefix: str, check: Callable
) -> None:
    augment = dataset.augmentations
    check(
        0 < augment.min_scale_factor <= augment.max_scale_factor,
        f"{prefix}.min_scale_factor",
        "needs 0 < min_scale_factor <= max_scale_factor",
    )
    _check_probability(augment.flip_probability, f"{prefix}.flip_probability", check)
    sampling_range = augment.frame_sampling_range
    check(
        sampling_range == 0 or sampling_range >= dataset.clip_length - 1,
        f"{prefix}.frame_sampling_range",
        f"must be 0 (frame_step clips) or at least clip_length - 1 = {dataset.clip_length - 1}",
    )
    check(
        sampling_range == 0 or dataset.frame_step == 1,
        f"{prefix}.frame_sampling_range",
        "replaces frame_step; leave frame_step at 1 when frame_sampling_range is set",
    )
    _check_probability(augment.copy_paste_probability, f"{prefix}.copy_paste_probability", check)
    check(augment.copy_paste_scale_ratio > 0, f"{prefix}.copy_paste_scale_ratio", "must be > 0")
    jitter = augment.color_jitter
    _check_probability(jitter.probability, f"{prefix}.color_jitter.probability", check)
    check(jitter.brightness_delta >= 0, f"{prefix}.color_jitter.brightness_delta", "must be >= 0")
    for kind in ("contrast", "saturation"):
        low = getattr(jitter, f"min_{kind}_factor")
        high = getattr(jitter, f"max_{kind}_factor")
        check(
            0 <= low <= high,
            f"{prefix}.color_jitter.min_{kind}_factor",
            f"needs 0 <= min_{kind}_factor <= max_{kind}_factor",
        )
    check(
        0 <= jitter.hue_delta <= 0.5,
        f"{prefix}.color_jitter.hue_delta",
        "must be within [0, 0.5] (a fraction of the hue circle)",
    )


def _validate_trainer(trainer: config_pb2.TrainerOptions, check: Callable) -> None:
    solver = trainer.solver_options
    check(
        solver.optimizer in OPTIMIZERS,
        "trainer_options.solver_options.optimizer",
        f"unknown optimizer '{solver.optimizer}'; expected one of {', '.join(OPTIMIZERS)}",
    )
    check(
        solver.training_number_of_steps > 0,
        "trainer_options.solver_options.training_number_of_steps",
        "must be positive",
    )
    check(
        0 <= solver.warmup_steps < solver.training_number_of_steps,
        "trainer_options.solver_options.warmup_steps",
        "must be at least 0 and below training_number_of_steps",
    )
    check(
        trainer.mixed_precision in MIXED_PRECISION_POLICIES,
        "trainer_options.mixed_precision",
        f"unknown policy '{trainer.mixed_precision}'; expected one of "
        + ", ".join(MIXED_PRECISION_POLICIES),
    )
    check(
        trainer.distribution.strategy in STRATEGIES,
        "trainer_options.distribution.strategy",
        f"unknown strategy '{trainer.distribution.strategy}'; expected one of "
        + ", ".join(STRATEGIES),
    )
    for field in ("steps_per_loop", "save_checkpoints_steps", "max_checkpoints_to_keep"):
        value = getattr(trainer, field)
        check(value >= 1, f"trainer_options.{field}", f"must be at least 1, got {value}")


def _validate_evaluator(evaluator: config_pb2.EvaluatorOptions, check: Callable) -> None:
    post = evaluator.post_processing
    check(
        post.mode in POST_PROCESSING_MODES,
        "evaluator_options.post_processing.mode",
        f"unknown mode '{post.mode}'; expected maskwise or pixelwise",
    )
    for field in (
        "class_threshold_thing",
        "class_threshold_stuff",
        "mask_threshold",
        "overlap_threshold",
        "pixel_confidence_threshold",
    ):
        _check_probability(
            getattr(post, field), f"evaluator_options.post_processing.{field}", check
        )
    stitching = evaluator.stitching
    check(
        stitching.overlap_measure in OVERLAP_MEASURES,
        "evaluator_options.stitching.overlap_measure",
        f"unknown measure '{stitching.overlap_measure}'; expected iou or dice",
    )
    _check_probability(
        stitching.overlap_threshold, "evaluator_options.stitching.overlap_threshold", check
    )
    check(
        stitching.output_frames in OUTPUT_FRAMES,
        "evaluator_options.stitching.output_frames",
        f"unknown value '{stitching.output_frames}'; expected one of {', '.join(OUTPUT_FRAMES)}",
    )
    memory = evaluator.memory_buffer
    prefix = "evaluator_options.memory_buffer"
    for field, allowed in (
        ("kind", MEMORY_BUFFER_KINDS),
        ("box_distance", BOX_DISTANCES),
        ("assignment", ASSIGNMENTS),
        ("new_object_insertion", NEW_OBJECT_INSERTIONS),
        ("embedding_output", EMBEDDING_OUTPUTS),
    ):
        value = getattr(memory, field)
        check(
            value in allowed,
            f"{prefix}.{field}",
            f"unknown value '{value}'; expected one of {', '.join(allowed)}",
        )
    _check_probability(memory.similarity_threshold, f"{prefix}.similarity_threshold", check)
    _check_probability(memory.momentum, f"{prefix}.momentum", check)
    check(memory.temperature > 0, f"{prefix}.temperature", "must be positive")
    check(memory.refresh_frames >= 1, f"{prefix}.refresh_frames", "must be at least 1")
    check(memory.max_tracks >= 1, f"{prefix}.max_tracks", "must be at least 1")
    for size in evaluator.metrics.vpq_window_sizes:
        check(size >= 1, "evaluator_options.metrics.vpq_window_sizes", "must be at least 1")


def _validate_output_frames(options: config_pb2.ExperimentOptions, check: Callable) -> None:
    """aligned_clips covers every frame only when the stride divides the clip length."""
    if options.evaluator_options.stitching.output_frames != "aligned_clips":
        return
    eval_dataset = options.eval_dataset_options
    clip_length = max(eval_dataset.clip_length, 1)
    stride = common.clip_stride(clip_length)
    check(
        clip_length % stride == 0,
        "evaluator_options.stitching.output_frames",
        f"aligned_clips reports only clips starting at multiples of clip_length "
        f"{clip_length}; with clips every {stride} frames it would skip frames. Use "
        f"first_clip, or a clip_length that is a multiple of the stride (T <= 2)",
    )


def _check_probability(value: float, field: str, check: Callable) -> None:
    check(0.0 <= value <= 1.0, field, f"must be within [0, 1], got {value}")


def _expand_placeholders(path: str, text: str) -> str:
    """Replaces `${VAR}` outside comments with the environment's value.

    Raises:
        ConfigError: a placeholder names an unset variable (the message names it).
    """
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        code, comment = _split_comment(line)

        def replace(match: re.Match, number: int = number) -> str:
            name = match.group(1)
            if name in os.environ:
                return os.environ[name]
            raise ConfigError(
                path,
                number,
                None,
                f"placeholder ${{{name}}} is not set in the environment; export {name}=... "
                "or replace the placeholder with a value (placeholders are expanded, never kept)",
            )

        lines[number - 1] = _PLACEHOLDER.sub(replace, code) + comment
    return "\n".join(lines)


def _split_comment(line: str) -> tuple[str, str]:
    """Splits a textproto line into (code, '# comment'), ignoring '#' inside strings."""
    quote = None
    escaped = False
    for index, char in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "#":
            return line[:index], line[index:]
    return line, ""


def field_lines(text: str) -> dict[str, int]:
    """Maps every dotted field path that appears in a textproto to its first line.

    Args:
        text: textproto text that parsed without error.

    Returns:
        {"model_options.backbone.name": 5, ...}; 1-based line numbers.
    """
    tokenizer = text_format.Tokenizer(text.splitlines())
    stack: list[str] = []
    lines: dict[str, int] = {}
    while not tokenizer.AtEnd():
        token = tokenizer.token
        if token in ("}", ">"):
            stack.pop()
            tokenizer.NextToken()
            continue
        if token in (",", ";"):
            tokenizer.NextToken()
            continue
        line = tokenizer._line + 1  # noqa: SLF001  (the tokenizer exposes no public line)
        field = ".".join([*stack, token])
        lines.setdefault(field, line)
        tokenizer.NextToken()
        if tokenizer.token == ":":
            tokenizer.NextToken()
        if tokenizer.token in ("{", "<"):
            stack.append(token)
            tokenizer.NextToken()
        else:
            _skip_value(tokenizer)
    return lines


def _skip_value(tokenizer: text_format.Tokenizer) -> None:
    """Advances the tokenizer past one scalar value, a [list] or adjacent strings."""
    if tokenizer.token == "[":
        while tokenizer.token != "]":
            tokenizer.NextToken()
        tokenizer.NextToken()
        return
    is_string = tokenizer.token[:1] in ("'", '"')
    tokenizer.NextToken()
    while is_string and tokenizer.token[:1] in ("'", '"'):
        tokenizer.NextToken()


def _line_of(lines: dict[str, int], field: str) -> int | None:
    """Line of `field`, or of its deepest ancestor present in the file."""
    parts = field.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in lines:
            return lines[prefix]
    return None
