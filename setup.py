"""Installs deeplab-video.

`trainer/` and `evaluation/` live at the repository top level but are installed under the
library's namespace as `deeplab_video.trainer` and `deeplab_video.evaluation`.
"""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.20.0",
    "tf-keras==2.20.1",
    "tf-models-official==2.20.0",
    "numpy==2.4.6",
    "opencv-python-headless==5.0.0.93",
    "protobuf==7.36.2",
    "absl-py==1.4.0",
    "scipy==1.17.1",
]
DEV_REQUIRES = ["av==18.1.0", "grpcio-tools==1.85.1", "pytest==9.2.0", "ruff==0.17.6"]

# Post-processing kernels for the CPU (post_processing/native_merge.py, op_set.lookup).
# Optional: where they cannot be built the TensorFlow ops run instead. No FMA contraction:
# the merge kernel must round its bilinear resize exactly as TensorFlow's kernel does.
NATIVE_KERNELS = setuptools.Extension(
    "deeplab_video.post_processing._native_kernels",
    sources=["deeplab_video/post_processing/_native_kernels.c"],
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno"],
    libraries=["pthread"],
    optional=True,
)

library_packages = setuptools.find_packages(include=["deeplab_video", "deeplab_video.*"])
top_level_packages = {"deeplab_video.trainer": "trainer", "deeplab_video.evaluation": "evaluation"}

setuptools.setup(
    name="deeplab-video",
    version="0.1.0",
    description="Video-kMaX: online and near-online video panoptic segmentation in TF/Keras.",
    python_requires=">=3.10,<3.13",
    packages=library_packages + list(top_level_packages),
    package_dir={"deeplab_video": "deeplab_video", **top_level_packages},
    ext_modules=[NATIVE_KERNELS],
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": DEV_REQUIRES},
    entry_points={
        "console_scripts": [
            "deeplab-video-train=deeplab_video.trainer.train:run",
            "deeplab-video-eval=deeplab_video.evaluation.evaluate:run",
            "deeplab-video-infer=deeplab_video.inference.infer:run",
            "deeplab-video-export=deeplab_video.export.export_model:run",
            "deeplab-video-convert-checkpoint=deeplab_video.model.convert_checkpoint:run",
            "deeplab-video-synthetic=deeplab_video.data.synthetic_cli:run",
            "deeplab-video-convert-kitti-step=deeplab_video.data.converters.kitti_step_cli:run",
            "deeplab-video-convert-vipseg=deeplab_video.data.converters.vipseg_cli:run",
            "deeplab-video-convert-cityscapes-vps="
            "deeplab_video.data.converters.cityscapes_vps_cli:run",
        ]
    },
)
