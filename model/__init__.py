"""The network of stage two: HCMNet, its layers, losses and OT, on plain tensors (``hcm.training``
trains and evaluates it)."""
