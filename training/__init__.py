"""The training harness: HCMNet (``hcm.model``) trained and evaluated on a feature cache
(``hcm.cache``).

- ``data``: cache items -> padded batches; ``settings``: dataset facts, shipped settings, ``TrainConfig``;
- ``trainer``: the one training loop; ``checkpoints``, ``distributed``: its state and ranks;
- ``inference``: the model built from its factory, run over a split (``predict``);
- ``runs``: the run folder and what a run logs; ``evaluate``, ``metrics``: the field's metrics.

The commands that cross stages (train in a workspace, predict, ablate, quickstart) are in
``hcm.apps``.
"""

from hcm.core.errors import HcmError


class TrainingError(HcmError, RuntimeError):
    """Training or evaluation cannot go on; the message says why and what to do."""
