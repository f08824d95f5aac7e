"""Backbones: one file per family, each registering its networks by name with `@register_backbone`."""
from search.backbones.registry import BACKBONES, GraphBuilder, create_backbone, register_backbone, scale_channels
from search.backbones import digits, mobilenetv2, resnet, vgg  # noqa: E402,F401  (registration on import)

__all__ = ["BACKBONES", "GraphBuilder", "create_backbone", "register_backbone", "scale_channels"]
