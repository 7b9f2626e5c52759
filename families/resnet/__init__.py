"""ResNet-50 (torchvision's architecture) for the split stage's bare-graph demo; see `model`."""
