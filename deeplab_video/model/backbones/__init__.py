"""Backbones; importing the package registers every backbone with `factory`."""

from deeplab_video.model.backbones import axial_resnet, convnext, factory, resnet

__all__ = ["axial_resnet", "convnext", "factory", "resnet"]
