r"""Checks that DeepLab2 kMaX-DeepLab checkpoints run in our network with DeepLab2's outputs.

For every case (dataset, backbone), in two processes:
1. DeepLab2's side, with DeepLab2's own Python (TensorFlow <= 2.15): scripts/
   deeplab2_reference.py builds DeepLab2's kMaX-DeepLab from its checkout and its own
   config, gives every variable random values, saves it as DeepLab2 does and writes its
   class and mask logits on one random image.
2. Our side, here: builds our T=1 inference network from configs/<dataset>/ (the backbone
   replaced where we ship no config for it), loads the checkpoint with
   `pretrained.load_pretrained`, and compares the logits on the same image.

    python scripts/deeplab2_parity.py --deeplab2 /path/to/deeplab2 \
        --deeplab2_python /path/to/tf215-venv/bin/python --work_dir /tmp/parity \
        --cases coco:resnet50,coco:axial_resnet50,cityscapes:convnext_tiny

Prints one line per case (variables restored / missing / mismatched / unused; for the
class logits and the mask logits the largest absolute difference, the reference's RMS and
the float32 noise floor) and writes parity.json to work_dir. A random network amplifies
float32 rounding, most where a k-means argmax has a near-tie (a pixel whose two best
queries differ by less than the rounding error flips between them, which moves the
cluster centres of the next layer): the noise floor, how far our own outputs move when
the input is scaled by 1 + 1e-7 (about one unit in the last place), is what rounding
alone does to that network (one probe of it: DeepLab2 rounds differently in every layer,
not only at the input). Exits with status 1 when a variable is missing or mismatched, the
median mask difference exceeds --tolerance times the reference's RMS, or a largest
difference exceeds 10 noise floors plus that.
"""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from deeplab_video import config
from deeplab_video.model import builder, deeplab2_mapping, pretrained

_DEEPLAB2 = flags.DEFINE_string("deeplab2", None, "DeepLab2 checkout (folder 'deeplab2').")
_DEEPLAB2_PYTHON = flags.DEFINE_string(
    "deeplab2_python", sys.executable, "Python with TensorFlow <= 2.15 for DeepLab2's side."
)
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Checkpoints and outputs go here.")
_CASES = flags.DEFINE_list(
    "cases",
    ["coco:resnet50", "coco:axial_resnet50", "coco:convnext_tiny", "cityscapes:resnet50"],
    "dataset:backbone pairs; datasets coco, cityscapes; backbones as in our configs.",
)
_SIZE = flags.DEFINE_string("size", "161,225", "Image height,width (each 32k + 1).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random weights and image.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance",
    1e-3,
    "Accepted median difference, and difference beyond 10 noise floors, relative to the "
    "reference's RMS.",
)
flags.mark_flags_as_required(["deeplab2", "work_dir"])

# Relative change of the input that probes the noise floor (about one float32 ulp).
_NUDGE = 1e-7
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Our backbone name -> the backbone part of DeepLab2's kMaX config names.
_DEEPLAB2_BACKBONES = {
    "resnet50": "r50",
    "axial_resnet50": "axial_r50",
    "convnext_tiny": "convnext_tiny",
    "convnext_small": "convnext_small",
    "convnext_base": "convnext_base",
    "convnext_large": "convnext_large",
}


def run_reference(dataset: str, backbone: str, seed: int, output_dir: str) -> None:
    """DeepLab2's side of one case, in DeepLab2's Python."""
    deeplab2_config = (
        f"configs/{dataset}/kmax_deeplab/kmax_meta_{_DEEPLAB2_BACKBONES[backbone]}_os32.textproto"
    )
    subprocess.run(
        [
            _DEEPLAB2_PYTHON.value,
            os.path.join(_REPO, "scripts", "deeplab2_reference.py"),
            f"--deeplab2={_DEEPLAB2.value}",
            f"--config={deeplab2_config}",
            f"--output_dir={output_dir}",
            f"--size={_SIZE.value}",
            f"--seed={seed}",
        ],
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def compare(dataset: str, backbone: str, output_dir: str) -> dict:
    """Our side of one case: load the checkpoint, run the image, compare the logits."""
    options = config.load_config(os.path.join(_REPO, "configs", dataset, "kmax_resnet50.textproto"))
    options.model_options.backbone.name = backbone
    model = builder.build_model(options, inference_only=True)
    report = pretrained.load_pretrained(model, os.path.join(output_dir, "ckpt-1"))
    reference = np.load(os.path.join(output_dir, "reference.npz"))
    clip = tf.constant(reference["image"][None, None], tf.float32)
    outputs = model(clip, training=False)
    expected_classes = reference["class_logits"]
    order = deeplab2_mapping.CLASS_ORDERS[expected_classes.shape[-1]]
    expected_classes = expected_classes[..., [order.index(c) for c in range(len(order))] + [-1]]
    class_logits = outputs["class_logits"][0].numpy()
    mask_logits = outputs["mask_logits"][0, 0].numpy()
    # The float32 noise floor: how far our own outputs move when the input moves by about
    # one unit in the last place (pixel values below 256, float32 epsilon 1.2e-7).
    nudged = model(clip * (1.0 + _NUDGE), training=False)
    return {
        "case": f"{dataset}:{backbone}",
        "restored": len(report.restored),
        "missing": len(report.missing),
        "mismatched": len(report.mismatched),
        "unused": len(report.unused),
        "class_max_abs_diff": float(np.abs(class_logits - expected_classes).max()),
        "class_max_abs": float(np.abs(expected_classes).max()),
        "mask_max_abs_diff": float(np.abs(mask_logits - reference["mask_logits"]).max()),
        "mask_median_abs_diff": float(np.median(np.abs(mask_logits - reference["mask_logits"]))),
        "mask_max_abs": float(np.abs(reference["mask_logits"]).max()),
        "class_rms": float(np.sqrt(np.mean(expected_classes**2))),
        "mask_rms": float(np.sqrt(np.mean(reference["mask_logits"] ** 2))),
        "class_noise_floor": float(np.abs(nudged["class_logits"][0].numpy() - class_logits).max()),
        "mask_noise_floor": float(np.abs(nudged["mask_logits"][0, 0].numpy() - mask_logits).max()),
        "mask_shape": list(mask_logits.shape),
    }


def passes(result: dict, tolerance: float) -> bool:
    """Every variable filled, and no difference beyond what rounding explains.

    A wrong mapping moves most outputs by about their RMS; rounding moves the typical
    output far less than tolerance x RMS, and the largest by some noise floors.
    """
    return (
        result["missing"] == 0
        and result["mismatched"] == 0
        and result["mask_median_abs_diff"] <= tolerance * result["mask_rms"]
        and all(
            result[f"{name}_max_abs_diff"]
            <= 10 * result[f"{name}_noise_floor"] + tolerance * result[f"{name}_rms"]
            for name in ("class", "mask")
        )
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    results = []
    for case in _CASES.value:
        dataset, _, backbone = case.partition(":")
        if dataset not in ("coco", "cityscapes") or backbone not in _DEEPLAB2_BACKBONES:
            raise app.UsageError(f"unknown case '{case}'")
        output_dir = os.path.join(_WORK_DIR.value, f"{dataset}_{backbone}")
        logging.info("Case %s: DeepLab2's side", case)
        run_reference(dataset, backbone, _SEED.value, output_dir)
        logging.info("Case %s: ours", case)
        results.append(compare(dataset, backbone, output_dir))
    with open(os.path.join(_WORK_DIR.value, "parity.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print(
        f"{'case':<26}restored missing mismatched unused   class: max|diff|  floor  RMS"
        "   mask: max|diff| median  floor  RMS"
    )
    for r in results:
        print(
            f"{r['case']:<26}{r['restored']:>8}{r['missing']:>8}{r['mismatched']:>11}"
            f"{r['unused']:>7}   {r['class_max_abs_diff']:>15.1e}{r['class_noise_floor']:>7.0e}"
            f"{r['class_rms']:>5.1f}   {r['mask_max_abs_diff']:>14.1e}"
            f"{r['mask_median_abs_diff']:>7.0e}{r['mask_noise_floor']:>7.0e}{r['mask_rms']:>5.1f}"
        )
    if not all(passes(r, _TOLERANCE.value) for r in results):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
