"""Network blocks (pure PyTorch), e.g. RAS4DG's RSD bottleneck."""
