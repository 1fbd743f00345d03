"""Builds the official PyTorch Video-kMaX network with random weights: the reference side
of `scripts/official_parity.py`.

Run with the python of a venv that has torch (CPU is enough); nothing of deeplab_video or
TensorFlow is imported. The official code (github.com/dlsrbgg33/video_kmax, a checkout
given by --official_root) imports a few names of detectron2, fvcore and timm; minimal
stand-ins for them are installed into `sys.modules` below (detectron2 is not on PyPI).

    python scripts/official_reference.py --official_root video_kmax --backbone resnet50 \
        --num_classes 124 --output_dir /tmp/ref            # model_final.pth + reference.npz
    python scripts/official_reference.py ... --keys_only   # only keys.tsv (name, shape)

The network is the official VideokMaX's `backbone` and `sem_seg_head` (the only modules
with weights), so checkpoint keys are the official ones. Its weights are random but
well-conditioned, so that a port can be compared value for value:
- weights and biases are random; the last batch norm of every residual branch (which kMaX
  initialises at zero) and ConvNeXt's layer scales get scales around 0.1;
- batch-norm statistics are those of real activations (a train-mode pass over calibration
  images with cumulative averaging);
- a seed is kept only if every k-means assignment (argmax over queries of each decoder
  layer's mask logits) wins by a clear margin, so float noise cannot flip it;
- the outputs with 1 and 2 threads are compared.
The checkpoint is saved as detectron2's checkpointer does: torch.save({"model": state_dict}).
"""

import argparse
import json
import pathlib
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Official ConvNeXt-L widths and depths (configs/VIPSeg/*convnext_large*.yaml).
CONVNEXT_LARGE = {"DEPTHS": [3, 3, 27, 3], "DIMS": [192, 384, 768, 1536]}
# Official kMaX settings shared by every published config.
PIXEL_DECODER = {
    "dec_layers": [1, 5, 1, 1],
    "dec_channels": [512, 256, 128, 64],
    "layer_types": ["axial", "axial", "bottleneck", "bottleneck"],
}
TRANSFORMER_DECODER = {"dec_layers": [2, 2, 2], "in_channels": [2048, 1024, 512]}
NUM_QUERIES = 128
# Scale of the batch norms and layer scales that end a residual branch.
BRANCH_FINAL_SCALE = 0.1
# Names (suffixes before .weight) of the branch-final normalisations.
_BRANCH_FINAL = (
    "conv3.norm",
    "_conv3_bn.norm",
    "_query_conv3_bn.norm",
    "_query_ffn_conv2_bn.norm",
    "_kmeans_query_conv3_bn.norm",
)


# ---------------------------------------------------------------- stand-ins
def _registry_class() -> type:
    class Registry:
        """detectron2.utils.registry.Registry: name -> class or function."""

        def __init__(self, name: str):
            self._name, self._items = name, {}

        def register(self, obj: Any = None) -> Any:
            if obj is None:
                return self.register
            self._items[obj.__name__] = obj
            return obj

        def get(self, name: str) -> Any:
            return self._items[name]

    return Registry


def _configurable(init: Callable[..., None]) -> Callable[..., None]:
    """detectron2.config.configurable for explicit keyword arguments (no cfg objects)."""
    return init


class _ShapeSpec:
    """detectron2.layers.ShapeSpec."""

    def __init__(self, channels=None, height=None, width=None, stride=None):
        self.channels, self.height, self.width, self.stride = channels, height, width, stride


class _CNNBlockBase(nn.Module):
    """detectron2.layers.CNNBlockBase."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def freeze(self) -> "_CNNBlockBase":
        for p in self.parameters():
            p.requires_grad = False
        return self


class _Conv2d(nn.Conv2d):
    """detectron2.layers.Conv2d: convolution, then optional norm and activation."""

    def __init__(self, *args: Any, norm: nn.Module | None = None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm, self.activation = norm, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if self.norm is not None:
            x = self.norm(x)
        return x if self.activation is None else self.activation(x)


class _Backbone(nn.Module):
    """detectron2.modeling.Backbone."""

    @property
    def size_divisibility(self) -> int:
        return 0


class _DropPath(nn.Module):
    """timm DropPath (inference: the identity)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _c2_msra_fill(module: nn.Module) -> None:
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def install_stand_ins() -> None:
    """Puts detectron2 / fvcore / timm modules with the names the official code imports."""
    registry = _registry_class()
    modules = {
        "detectron2": {},
        "detectron2.config": {"configurable": _configurable},
        "detectron2.layers": {
            "ShapeSpec": _ShapeSpec,
            "CNNBlockBase": _CNNBlockBase,
            "Conv2d": _Conv2d,
        },
        "detectron2.modeling": {
            "BACKBONE_REGISTRY": registry("BACKBONE"),
            "SEM_SEG_HEADS_REGISTRY": registry("SEM_SEG_HEADS"),
            "Backbone": _Backbone,
            "ShapeSpec": _ShapeSpec,
        },
        "detectron2.utils": {},
        "detectron2.utils.registry": {"Registry": registry},
        "fvcore": {},
        "fvcore.nn": {},
        "fvcore.nn.weight_init": {"c2_msra_fill": _c2_msra_fill},
        "timm": {},
        "timm.models": {},
        "timm.models.layers": {"DropPath": _DropPath, "trunc_normal_": nn.init.trunc_normal_},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        module.__path__ = []
        sys.modules[name] = module


def import_official(root: pathlib.Path) -> types.SimpleNamespace:
    """Imports the official model modules (bypassing the package's data-loading __init__)."""
    package = types.ModuleType("video_kmax_deeplab")
    package.__path__ = [str(root / "video_kmax_deeplab")]
    sys.modules["video_kmax_deeplab"] = package
    from video_kmax_deeplab.modeling.backbone import convnext, deeplab2_resnet
    from video_kmax_deeplab.modeling.meta_arch import kmax_deeplab_head
    from video_kmax_deeplab.modeling.pixel_decoder import kmax_pixel_decoder
    from video_kmax_deeplab.modeling.transformer_decoder import kmax_transformer_decoder

    return types.SimpleNamespace(
        convnext=convnext,
        resnet=deeplab2_resnet,
        head=kmax_deeplab_head,
        pixel_decoder=kmax_pixel_decoder,
        transformer_decoder=kmax_transformer_decoder,
    )


def _cfg(tree: dict[str, Any]) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        **{k: _cfg(v) if isinstance(v, dict) else v for k, v in tree.items()}
    )


class OfficialVideoKMaX(nn.Module):
    """The official VideokMaX's modules with weights: `backbone` and `sem_seg_head`."""

    def __init__(
        self,
        official,
        backbone: str,
        num_classes: int,
        image_size,
        num_frames: int,
        auxiliary_semantic: bool,
    ):
        super().__init__()
        if backbone == "resnet50":
            cfg = _cfg(
                {
                    "MODEL": {
                        "BACKBONE": {"FREEZE_AT": 0},
                        "RESNETS": {
                            "NORM": "SyncBN",
                            "STEM_OUT_CHANNELS": 64,
                            "DEPTH": 50,
                            "NUM_GROUPS": 1,
                            "WIDTH_PER_GROUP": 64,
                            "RES2_OUT_CHANNELS": 256,
                            "STRIDE_IN_1X1": False,
                            "RES5_DILATION": 1,
                            "OUT_FEATURES": ["res2", "res3", "res4", "res5"],
                        },
                    }
                }
            )
            self.backbone = official.resnet.build_deeplab2_resnet_backbone(
                cfg, _ShapeSpec(channels=3)
            )
        elif backbone == "convnext_large":
            cfg = _cfg(
                {
                    "MODEL": {
                        "CONVNEXT": dict(
                            CONVNEXT_LARGE,
                            IN_CHANNELS=3,
                            DROP_PATH_RATE=0.0,
                            LSIT=1e-6,
                            OUT_INDICES=[0, 1, 2, 3],
                            OUT_FEATURES=["res2", "res3", "res4", "res5"],
                        )
                    }
                }
            )
            self.backbone = official.convnext.D2ConvNeXt(cfg, _ShapeSpec(channels=3))
        else:
            raise ValueError(f"unknown backbone {backbone}")
        shapes = self.backbone.output_shape()
        pixel_decoder = official.pixel_decoder.kMaXPixelDecoder(
            input_shape=shapes, drop_path_prob=0.0, spatial_shape=list(image_size), **PIXEL_DECODER
        )
        predictor = official.transformer_decoder.VideokMaXTransformerDecoder(
            num_classes=num_classes,
            num_queries=NUM_QUERIES,
            drop_path_prob=0.0,
            add_aux_semantic_pred=auxiliary_semantic,
            advanced_kmax=False,
            skip_conn_init_value=0.0,
            input_shape_from_backbone=shapes,
            num_frames=num_frames,
            **TRANSFORMER_DECODER,
        )
        self.sem_seg_head = official.head.kMaXDeepLabHead(
            input_shape=shapes,
            num_classes=num_classes,
            pixel_decoder=pixel_decoder,
            loss_weight=1.0,
            ignore_value=255,
            transformer_predictor=predictor,
        )

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames: float [T, 3, H, W] normalised -> official outputs (pred_logits, ...)."""
        return self.sem_seg_head(self.backbone(frames))

    def features(self, frames: torch.Tensor) -> dict[str, np.ndarray]:
        """Backbone endpoints and pixel-decoder outputs, float [T, h, w, C] each."""
        with torch.no_grad():
            endpoints = self.backbone(frames)
            panoptic, _, multi_scale = self.sem_seg_head.pixel_decoder.forward_features(endpoints)
        decoded = dict(
            zip(("decoder_os32", "decoder_os16", "decoder_os8"), multi_scale, strict=True)
        )
        decoded["decoder_os4"] = panoptic
        return {
            name: value.permute(0, 2, 3, 1).numpy()
            for name, value in {**endpoints, **decoded}.items()
        }


# ---------------------------------------------------------------- random weights
def randomise(model: nn.Module, seed: int) -> None:
    """Gives every parameter random values (batch-norm statistics come from `calibrate`)."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for name, param in model.named_parameters():
            module_name, _, kind = name.rpartition(".")
            is_norm = (
                ".norm" in name
                or "batch_norm" in name
                or "_in_norms" in name
                or ("downsample_layers" in name and param.ndim == 1)
            )
            if kind == "gamma":  # ConvNeXt layer scale
                param.copy_(uniform(param.shape, 0.5, 1.5) * BRANCH_FINAL_SCALE)
            elif param.ndim == 1 and kind == "weight" and is_norm:
                scale = BRANCH_FINAL_SCALE if module_name.endswith(_BRANCH_FINAL) else 1.0
                param.copy_(uniform(param.shape, 0.5, 1.5) * scale)
            elif kind == "bias":
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
            elif param.ndim >= 2 and "_embeddings" not in name and "_cluster_centers" not in name:
                fan_in = param[0].numel() if param.ndim > 2 else param.shape[1]
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            else:  # relative positional encodings, cluster centres
                param.copy_(torch.randn(param.shape, generator=generator))


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def calibrate(model: OfficialVideoKMaX, clips: list[torch.Tensor]) -> None:
    """Sets batch-norm statistics to the averages over train-mode passes of `clips`."""
    for norm in _batch_norms(model):
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for clip in clips:
            model(clip)
    model.eval()


def normalise(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, H, W], (x - 127.5) / 127.5 as the official configs."""
    return (torch.from_numpy(frames).float().permute(0, 3, 1, 2) - 127.5) / 127.5


def smooth_image(rng: np.random.Generator, num_frames: int, size) -> np.ndarray:
    """uint8 [T, H, W, 3]: random smooth colour fields with blobs (a camera-like clip)."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    base = rng.uniform(0, 255, size=3)
    waves = rng.normal(size=(4, 3, 3))
    blobs = rng.uniform(size=(6, 4))
    for t in range(num_frames):
        image = np.tile(base, (height, width, 1))
        for a, b, c in waves:
            image += 40 * np.sin(
                6 * (a[:, None, None] * x + b[:, None, None] * y) + c[:, None, None] + t
            ).transpose(1, 2, 0)
        for cy, cx, r, v in blobs:
            mask = ((y - cy - 0.02 * t) ** 2 + (x - cx) ** 2) < (0.1 + 0.2 * r) ** 2
            image[mask] = 255 * v
        image += rng.normal(scale=8, size=image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(frames)


class AssignmentMonitor:
    """Records the k-means assignment margins of every decoder layer (forward hooks)."""

    def __init__(self, model: OfficialVideoKMaX):
        self.margins: list[float] = []
        self.assignments: list[np.ndarray] = []
        layers = model.sem_seg_head.predictor._kmax_transformer_layers
        for layer in layers:
            layer._predcitor.register_forward_hook(self._hook)

    def _hook(self, module, inputs, outputs) -> None:
        logits = outputs["mask_logits"].detach()  # [B*T, N, h, w]
        top2 = logits.topk(2, dim=1).values
        margin = (top2[:, 0] - top2[:, 1]).min() / logits.std()
        self.margins.append(float(margin))
        self.assignments.append(logits.argmax(dim=1).numpy())

    def reset(self) -> None:
        self.margins, self.assignments = [], []


def run(model: OfficialVideoKMaX, clip: torch.Tensor, threads: int):
    torch.set_num_threads(threads)
    with torch.no_grad():
        outputs = model(clip)
    return outputs["pred_logits"].numpy(), outputs["pred_masks"].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_root", required=True, type=pathlib.Path)
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "convnext_large"])
    parser.add_argument("--num_classes", type=int, default=124)
    parser.add_argument(
        "--auxiliary_semantic",
        action="store_true",
        help="build the training-only auxiliary semantic predictor (COCO configs)",
    )
    parser.add_argument("--image_size", type=int, nargs=2, default=[129, 193])
    parser.add_argument("--num_frames", type=int, default=1)
    parser.add_argument("--output_dir", required=True, type=pathlib.Path)
    parser.add_argument("--keys_only", action="store_true", help="write only keys.tsv")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--max_seeds", type=int, default=20)
    parser.add_argument(
        "--min_margin",
        type=float,
        default=2e-4,
        help="smallest accepted top-1 minus top-2 mask logit, over the "
        "logits' standard deviation, of any k-means assignment",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # the official torch.cuda.amp use
    args.output_dir.mkdir(parents=True, exist_ok=True)
    install_stand_ins()
    official = import_official(args.official_root)
    model = OfficialVideoKMaX(
        official,
        args.backbone,
        args.num_classes,
        args.image_size,
        args.num_frames,
        args.auxiliary_semantic,
    ).eval()
    state = model.state_dict()
    flags = f"--backbone {args.backbone} --num_classes {args.num_classes}"
    flags += " --auxiliary_semantic" if args.auxiliary_semantic else ""
    lines = [
        "# State-dict names, shapes and dtypes of the official PyTorch Video-kMaX network "
        "(dlsrbgg33/video_kmax 465a07c),",
        f"# written by: scripts/official_reference.py --official_root <checkout> {flags} "
        "--keys_only",
        "# (name<TAB>comma-separated shape<TAB>dtype)",
    ]
    for name, tensor in state.items():
        shape = ",".join(str(size) for size in tensor.shape)
        lines.append(f"{name}\t{shape}\t{str(tensor.dtype).replace('torch.', '')}")
    (args.output_dir / "keys.tsv").write_text("\n".join(lines) + "\n")
    print(f"{len(state)} tensors, {sum(t.numel() for t in state.values())} values")
    if args.keys_only:
        return

    rng = np.random.default_rng(1234)
    clip = smooth_image(rng, args.num_frames, args.image_size)
    calibration = [
        normalise(smooth_image(rng, args.num_frames, args.image_size)) for _ in range(3)
    ] + [normalise(clip)]
    monitor = AssignmentMonitor(model)
    for seed in range(args.first_seed, args.first_seed + args.max_seeds):
        randomise(model, seed)
        calibrate(model, calibration)
        monitor.reset()
        class_logits, mask_logits = run(model, normalise(clip), threads=2)
        margin = min(monitor.margins)
        print(f"seed {seed}: smallest relative k-means margin {margin:.2e}")
        if margin >= args.min_margin:
            break
    else:
        raise SystemExit(f"no seed in {args.max_seeds} tries gives margins >= {args.min_margin}")
    assignments_2 = monitor.assignments
    monitor.reset()
    class_1, mask_1 = run(model, normalise(clip), threads=1)
    same_assignments = all(
        np.array_equal(a, b) for a, b in zip(assignments_2, monitor.assignments, strict=True)
    )
    summary = {
        "seed": seed,
        "min_relative_margin": margin,
        "threads_1_vs_2_max_abs_diff_class": float(np.abs(class_1 - class_logits).max()),
        "threads_1_vs_2_max_abs_diff_mask": float(np.abs(mask_1 - mask_logits).max()),
        "threads_1_vs_2_same_assignments": same_assignments,
    }
    print(json.dumps(summary, indent=1))
    torch.save({"model": model.state_dict(), "iteration": 0}, args.output_dir / "model_final.pth")
    np.savez(
        args.output_dir / "reference.npz",
        image=clip,
        class_logits=class_logits,
        mask_logits=mask_logits,
        **model.features(normalise(clip)),
    )
    (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
