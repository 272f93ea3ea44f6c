"""The commands that cross stages: train and evaluate in a workspace (``train``), predict on new
clips (``predict``), the paper's ablations (``ablate``) and the offline demo (``quickstart``).

Arrows point one way: apps -> training -> model and cache; apps -> pipeline -> cache.
"""
