"""Exports the online Video-kMaX model (T = 1) as a TFLite (LiteRT) flatbuffer.

    export_tflite(opts, "/tmp/model.tflite", frame_size=(385, 1249))
    export_tflite(opts, "/tmp/model.tflite", (385, 1249), "/tmp/model_dir", "float16")

The flatbuffer holds the SavedModel's three signatures (`serving_module`: segment_clip,
initial_state, track), traced from the same functions with every shape fixed: frames
uint8 [1, 1, height, width, 3] of the given frame_size, and the tracking state with
previous_frame int32 [height, width] from the start. Names, dtypes and the meaning of
every tensor are the SavedModel's; `tflite_runner.TFLiteVideoRunner` runs it over videos
with the interpreter and numpy only.

Only the online model is converted: a clip_length above 1 is rejected (near-online
stitching would need a second frame in every signature; export those experiments as a
SavedModel).

Quantization ("none", "float16", "dynamic_int8") applies to the weights: float16 halves
them, dynamic_int8 stores them in int8 and runs the float kernels that have int8 variants
(convolutions, matmuls) with activations quantized on the fly. Post-processing and
tracking stay in float32 / int32 either way.

Ops. The converter is asked for TFLite builtin ops only. The post-processing steps that
use TensorFlow ops without a builtin counterpart (bincount, int64 bit operations,
unique_with_counts, float64 counts) are traced under `op_set.tflite_builtin_ops()`, which
makes them take builtin-op variants that give the same values, so the flatbuffer runs on
the plain LiteRT interpreter. An op that still has no builtin counterpart fails the export with its
name; select_tf_ops=True lets such ops fall back to TensorFlow ops instead
(SELECT_TF_OPS: they need an interpreter with the Flex delegate, which neither
ai-edge-litert nor TensorFlow 2.20's tf.lite.Interpreter has), and logs them
(`non_builtin_ops` lists them from a flatbuffer).
"""

import os
import re
import tempfile

import flatbuffers
import tensorflow as tf
from absl import logging

from deeplab_video.export import export_lib, serving_module, tflite_runner
from deeplab_video.post_processing import op_set
from deeplab_video.protos import config_pb2

QUANTIZATIONS = ("none", "float16", "dynamic_int8")
SIGNATURES = (serving_module.SEGMENT_CLIP, serving_module.INITIAL_STATE, serving_module.TRACK)
# How the converter names a TensorFlow op it cannot lower to a builtin op.
_UNSUPPORTED_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def _checked_frame_size(frame_size) -> tuple[int, int]:
    """(height, width) as two positive ints.

    Raises:
      ValueError: frame_size is not two positive integers.
    """
    try:
        height, width = (int(side) for side in frame_size)
        valid = (height, width) == tuple(frame_size) and height > 0 and width > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            f"frame_size must be two positive integers (height, width); got {frame_size!r}."
        )
    if height * width >= op_set.MAX_CLIP_PIXELS:
        raise ValueError(
            f"frame_size {height}x{width} has {height * width} pixels; the TFLite model counts "
            f"pixels in float32, exactly below {op_set.MAX_CLIP_PIXELS}."
        )
    return height, width


def _check_online(opts: config_pb2.ExperimentOptions) -> None:
    """Raises ValueError unless the experiment's eval clips hold one frame."""
    clip_length = opts.eval_dataset_options.clip_length
    if clip_length > 1:
        raise ValueError(
            f"export_tflite converts the online model (eval_dataset_options.clip_length 1); "
            f"'{opts.experiment_name or 'this experiment'}' has clip_length {clip_length}. Use "
            f"an online config (configs/*/*_online.textproto) or export a SavedModel."
        )


def _converter(
    saved_model_dir: str, quantization: str, select_tf_ops: bool
) -> tf.lite.TFLiteConverter:
    """A converter of the three signatures with the requested quantization and op sets."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(SIGNATURES)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if select_tf_ops else []
    )
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter


# Builtin options that name subgraphs (control flow), by their index fields.
_SUBGRAPH_INDEX_FIELDS = (
    "thenSubgraphIndex",
    "elseSubgraphIndex",
    "condSubgraphIndex",
    "bodySubgraphIndex",
    "initSubgraphIndex",
)


def primary_subgraph_first(model_content: bytes, signature: str) -> bytes:
    """The same model with `signature`'s subgraph moved to index 0.

    The converter orders the signatures' subgraphs by name (initial_state first), and
    LiteRT applies its default XNNPACK delegate to subgraph 0 only: without the move,
    segment_clip's network ran on the builtin kernels, ~6x slower (ResNet-50 at
    385x1249: 6.7 s against 1.4 s per frame). Every subgraph index in the model (the
    signatures', and those of IF, WHILE and CALL_ONCE ops) is renumbered.

    Args:
      model_content: a TFLite flatbuffer.
      signature: the signature whose subgraph goes first.
    """
    model = tflite_runner.flatbuffer_schema().ModelT.InitFromPackedBuf(model_content, 0)
    (first,) = [
        definition.subgraphIndex
        for definition in model.signatureDefs
        if definition.signatureKey.decode() == signature
    ]
    order = [first] + [index for index in range(len(model.subgraphs)) if index != first]
    renumbered = {old: new for new, old in enumerate(order)}
    model.subgraphs = [model.subgraphs[index] for index in order]
    for definition in model.signatureDefs:
        definition.subgraphIndex = renumbered[definition.subgraphIndex]
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            for field in _SUBGRAPH_INDEX_FIELDS:
                if hasattr(operator.builtinOptions, field):
                    index = getattr(operator.builtinOptions, field)
                    setattr(operator.builtinOptions, field, renumbered[index])
    builder = flatbuffers.Builder(len(model_content) + 2**20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def non_builtin_ops(model_content: bytes) -> list[str]:
    """The TensorFlow ops a TFLite model runs through the Flex delegate (sorted names)."""
    return tflite_runner.non_builtin_ops(model_content)


def export_tflite(
    opts: config_pb2.ExperimentOptions,
    output_path: str,
    frame_size: tuple[int, int],
    checkpoint_path: str | None = None,
    quantization: str = "none",
    select_tf_ops: bool = False,
) -> str:
    """Builds the online inference model, restores its weights and writes a .tflite file.

    Args:
      opts: the experiment, as `config.load_config` returns it; its eval clip_length
        must be 1 (online).
      output_path: the .tflite file to write (its folder is created; an existing file is
        overwritten).
      frame_size: (height, width) of the frames the model takes (fixed in the model;
        the runner resizes other frames), below 2**24 pixels.
      checkpoint_path: checkpoint prefix or model_dir; None exports freshly initialised
        weights.
      quantization: "none" (float32), "float16" or "dynamic_int8" (see the module
        docstring).
      select_tf_ops: let ops without a builtin counterpart fall back to TensorFlow ops
        (logged; see the module docstring); False makes them an error.

    Returns:
      output_path.

    Raises:
      ValueError: an unknown quantization, a frame_size that is not two positive
        integers, a near-online experiment, a checkpoint that does not fit
        (CheckpointMismatchError), or, with select_tf_ops=False, ops that are not
        builtin (named in the message).
      FileNotFoundError: checkpoint_path names no checkpoint.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got '{quantization}'.")
    frame_size = _checked_frame_size(frame_size)
    _check_online(opts)
    with tempfile.TemporaryDirectory() as saved_model_dir:
        with op_set.tflite_builtin_ops():
            module = export_lib.build_serving_module(opts, checkpoint_path, frame_size)
            tf.saved_model.save(module, saved_model_dir, signatures=module.signatures())
        converter = _converter(saved_model_dir, quantization, select_tf_ops)
        try:
            content = converter.convert()
        except Exception as error:  # The converter's ConverterError is not public API.
            unsupported = sorted(set(_UNSUPPORTED_OP.findall(str(error))))
            if not unsupported:
                raise
            raise ValueError(
                f"These TensorFlow ops have no TFLite builtin counterpart: "
                f"{', '.join(unsupported)}; export with select_tf_ops=True for an "
                f"interpreter with the Flex delegate."
            ) from None
    content = primary_subgraph_first(content, serving_module.SEGMENT_CLIP)
    fallback = non_builtin_ops(content)
    if fallback:
        logging.warning(
            "TFLite export: %d TensorFlow ops have no builtin counterpart and need the "
            "Flex delegate: %s",
            len(fallback),
            ", ".join(fallback),
        )
    folder = os.path.dirname(output_path)
    if folder:
        tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(output_path, "wb") as f:
        f.write(content)
    logging.info(
        "Exported TFLite model to %s (%s, frames %dx%d, %.1f MB; signatures: %s)",
        output_path,
        quantization,
        *frame_size,
        len(content) / 2**20,
        ", ".join(SIGNATURES),
    )
    return output_path
