r"""Scores predicted panoptic PNG folders against ground truth: STQ, VPQ and frame PQ.

Usage:
    python -m deeplab_video.evaluation.evaluate --gt_dir=.../panoptic_maps/val \
        --pred_dir=.../predictions --dataset=kitti_step --output_json=results.json

Both folders hold `<sequence>/<frame>.png` (see `label_io` for the KITTI-STEP and VIPSeg
encodings). The dataset's constants come from `--dataset`; `--num_classes`, `--things`,
`--label_divisor` and `--ignore_label` override them or stand in for an unknown dataset.
A table goes to stdout and, with `--output_json`, every number to a JSON file. Bad inputs
(missing frames, size mismatches, unknown classes) stop the run with a message that names
the file and a non-zero exit status.
"""

import json
import sys
from collections.abc import Sequence

from absl import app, flags, logging

from deeplab_video import datasets, entry_point
from deeplab_video.evaluation import evaluate_lib, label_io

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (`run` calls this: importing the module defines none)."""
    flags.DEFINE_string(
        "gt_dir", None, "Ground-truth folder of <sequence>/<frame>.png.", required=True
    )
    flags.DEFINE_string(
        "pred_dir", None, "Prediction folder with the same layout and names.", required=True
    )
    flags.DEFINE_enum(
        "dataset", None, sorted(datasets.DATASETS), "Dataset whose constants decode the labels."
    )
    flags.DEFINE_enum(
        "format",
        None,
        list(label_io.FORMATS),
        "PNG encoding (default: vipseg for --dataset=vipseg, else kitti_step).",
    )
    flags.DEFINE_integer("num_classes", None, "Overrides the dataset's number of classes.")
    flags.DEFINE_list("things", None, "Overrides the dataset's thing class ids (comma-separated).")
    flags.DEFINE_integer("label_divisor", None, "Overrides the dataset's label divisor.")
    flags.DEFINE_integer("ignore_label", None, "Overrides the dataset's ignore label.")
    flags.DEFINE_list("window_sizes", ["1", "2", "3", "4"], "VPQ window sizes in annotated frames.")
    flags.DEFINE_integer("stq_offset", 0, "STQ id-pair offset (0: 2**16 * label_divisor).")
    flags.DEFINE_string("output_json", None, "Where to write every number as JSON.")


def _label_space() -> evaluate_lib.LabelSpace:
    """The dataset constants from --dataset, overridden by the explicit flags."""
    base = datasets.get_descriptor(FLAGS.dataset) if FLAGS.dataset else None
    overrides = {  # field: (flag name, flag value)
        "num_classes": ("num_classes", FLAGS.num_classes),
        "thing_ids": ("things", FLAGS.things and tuple(int(t) for t in FLAGS.things)),
        "label_divisor": ("label_divisor", FLAGS.label_divisor),
        "ignore_label": ("ignore_label", FLAGS.ignore_label),
    }
    values = {}
    for field, (flag, override) in overrides.items():
        if override is None and base is None:
            raise app.UsageError(f"give --dataset or --{flag}")
        values[field] = getattr(base, field) if override is None else override
    names = base.class_names if base and base.num_classes == values["num_classes"] else ()
    return evaluate_lib.LabelSpace(class_names=names, **values)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    space = _label_space()
    label_format = FLAGS.format or ("vipseg" if FLAGS.dataset == "vipseg" else "kitti_step")
    if not all(n.isdigit() and int(n) > 0 for n in FLAGS.window_sizes):
        raise app.UsageError(f"--window_sizes must be positive ints, got {FLAGS.window_sizes}")
    window_sizes = [int(n) for n in FLAGS.window_sizes]
    logging.info("Evaluating %s (%s format) with %s", FLAGS.pred_dir, label_format, space)
    results = evaluate_lib.evaluate_folders(
        FLAGS.gt_dir, FLAGS.pred_dir, space, label_format, window_sizes, FLAGS.stq_offset
    )
    sys.stdout.write(evaluate_lib.format_report(results) + "\n")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w", encoding="utf-8") as file:
            json.dump(evaluate_lib.results_to_json(results), file, indent=2)
        logging.info("Wrote %s", FLAGS.output_json)


def run() -> None:
    """Console entry point (`deeplab-video-eval`)."""
    define_flags()
    entry_point.run(main)


if __name__ == "__main__":
    run()
