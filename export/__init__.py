"""Export searched networks to TFLite and ONNX, physically pruned."""
