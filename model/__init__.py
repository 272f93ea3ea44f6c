"""Stage two: HCMNet, its losses, the training loop and the metrics."""
