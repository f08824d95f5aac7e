"""Backbones: one file per family, each registering its networks by name with `@register_backbone`."""
from search.backbones import digits, mobilenetv2, resnet, vgg  # noqa: F401  (registration on import)
from search.backbones.registry import BACKBONES, GraphBuilder, create_backbone, register_backbone, scale_channels

__all__ = ["BACKBONES", "GraphBuilder", "create_backbone", "register_backbone", "scale_channels"]
