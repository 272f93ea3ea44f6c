"""Every command of ``hcm``, one function each that prints and returns the exit code: the synthetic
corpora (``sample``), extraction (``extract``), imports of other frameworks' features
(``importers``), ``cache info/verify`` (``cache``), train and evaluate in a workspace (``train``),
the runs table (``results``), predict on new clips (``predict``), the paper's ablations
(``ablate``) and the offline demo (``quickstart``). The commands' declarations (options, help) are in
``commands``, by group, and ``hcm.cli`` registers them; what they share (option checks, choices, help
classes) is in ``options``.

Arrows point one way: apps -> training -> model and cache; apps -> pipeline -> cache.
"""
