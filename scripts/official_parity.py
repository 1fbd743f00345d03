"""Checks that official PyTorch Video-kMaX checkpoints run in our network exactly.

Two processes: `scripts/official_reference.py`, run by the python of a venv with torch,
builds the official network from its own code (a checkout of github.com/dlsrbgg33/video_kmax),
gives it random, well-conditioned weights, saves them as detectron2's checkpointer does
(`model_final.pth`) and records its class and stride-4 mask logits on a clip. This script
then builds our network from a config with `inference_only=True`, loads the checkpoint
with `load_pretrained`, runs the same clip and compares.

    python scripts/official_parity.py --official_root /path/to/video_kmax \
        --torch_python /path/to/venv/bin/python \
        --config_file configs/vipseg/resnet50_online.textproto --work_dir /tmp/parity

Prints one JSON record (also written to <work_dir>/<config name>/parity.json): what the
loader restored / left missing / did not use, and per output (class logits, stride-4 mask
logits, backbone endpoints and pixel-decoder features) the largest difference, the scale
(root mean square of the official values) and the fraction of values within 1e-3 of that
scale; "passed" (exit status 0) when nothing is missing or mismatched and 99.9% of the
class and mask logits are within it. The reference side also checks that 1 and 2 torch
threads give the same k-means assignments.

Use odd stride-32 widths (image width 64k + 1): the official ResizedFuse aligns corners
only then, as at its own test sizes (1601, 1409), and ours always does.
"""

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf

from deeplab_video.config import load_config
from deeplab_video.model import pretrained
from deeplab_video.model.builder import build_model

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE_SCRIPT = REPO_ROOT / "scripts" / "official_reference.py"
# Our backbone names -> the official script's.
_OFFICIAL_BACKBONES = {"resnet50": "resnet50", "convnext_large": "convnext_large"}
RELATIVE_TOLERANCE = 1e-3
# Parity holds when nothing is missing and this share of both outputs is within tolerance.
REQUIRED_FRACTION = 0.999
# Intermediate features compared as well: backbone endpoints and pixel-decoder outputs.
FEATURES = (
    "res2",
    "res3",
    "res4",
    "res5",
    "decoder_os32",
    "decoder_os16",
    "decoder_os8",
    "decoder_os4",
)


def compare(ours: np.ndarray, official: np.ndarray) -> dict[str, float]:
    """Largest difference, scale (RMS of the official values), share within 1e-3 x scale."""
    difference = np.abs(ours.astype(np.float64) - official.astype(np.float64))
    scale = float(np.sqrt(np.mean(np.square(official.astype(np.float64)))))
    return {
        "max_abs_diff": float(difference.max()),
        "scale_rms": scale,
        "fraction_within_1e-3_of_scale": float(np.mean(difference <= RELATIVE_TOLERANCE * scale)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_root", required=True, help="checkout of dlsrbgg33/video_kmax")
    parser.add_argument("--torch_python", required=True, help="python of a venv with torch")
    parser.add_argument("--config_file", default="configs/vipseg/resnet50_online.textproto")
    parser.add_argument("--work_dir", required=True, type=pathlib.Path)
    parser.add_argument("--image_size", type=int, nargs=2, default=[129, 193])
    parser.add_argument("--num_frames", type=int, default=0, help="0: the eval clip length")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing reference")
    args = parser.parse_args()
    opts = load_config(args.config_file)
    options = opts.model_options
    num_frames = args.num_frames or opts.eval_dataset_options.clip_length or 1
    reference_dir = args.work_dir / pathlib.Path(args.config_file).stem
    if not (args.reuse and (reference_dir / "reference.npz").exists()):
        command = [
            args.torch_python,
            str(REFERENCE_SCRIPT),
            "--official_root", args.official_root,
            "--backbone", _OFFICIAL_BACKBONES[options.backbone.name],
            "--num_classes", str(options.num_classes),
            "--num_frames", str(num_frames),
            "--image_size", *map(str, args.image_size),
            "--output_dir", str(reference_dir),
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=sys.stderr)
    reference = np.load(reference_dir / "reference.npz")
    model = build_model(opts, inference_only=True)
    report = pretrained.load_pretrained(model, str(reference_dir / "model_final.pth"))
    clip = tf.constant(reference["image"][None], tf.float32)  # [1, T, H, W, 3], 0..255
    outputs = model(clip, training=False)
    images = (tf.reshape(clip, [-1, *clip.shape[2:]]) - options.input_mean) / options.input_std
    endpoints = model.checkpoint_items["backbone"](images, training=False)
    decoded = model.checkpoint_items["pixel_decoder"](endpoints, training=False)
    features = {
        name: compare(decoded[name].numpy(), reference[name])
        for name in FEATURES
        if name in reference
    }
    official_masks = reference["mask_logits"].transpose(0, 2, 3, 1)[None]  # [1, T, h, w, N]
    record = {
        "config": args.config_file,
        "image_size": args.image_size,
        "num_frames": num_frames,
        "source_format": report.source_format,
        "restored": len(report.restored),
        "missing": list(report.missing),
        "mismatched": [list(map(str, m)) for m in report.mismatched],
        "unused": dict(
            collections.Counter(report.unused_reasons.get(k, "?") for k in report.unused)
        ),
        "class_logits": compare(outputs["class_logits"].numpy(), reference["class_logits"]),
        "mask_logits": compare(outputs["mask_logits"].numpy(), official_masks),
        "features": features,
        "official_reference": json.loads((reference_dir / "summary.json").read_text()),
    }
    record["passed"] = (
        not report.missing
        and not report.mismatched
        and all(
            record[name]["fraction_within_1e-3_of_scale"] >= REQUIRED_FRACTION
            for name in ("class_logits", "mask_logits")
        )
    )
    text = json.dumps(record, indent=1)
    (reference_dir / "parity.json").write_text(text)
    print(text)
    if not record["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
