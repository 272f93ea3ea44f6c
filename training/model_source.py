"""Which code builds a run's model: a registered name, never a module a run folder chooses.

A run's ``config.json`` records its model factory. Run folders are shared and downloaded, so
evaluating one must not import whatever ``module:Name`` its config names (that runs the
module's code). :func:`model_factory` looks the recorded name up in :data:`MODELS` (HCMNet is
``hcmnet``; the ``hcm.model.hcmnet:build_model`` of earlier run configs maps to it); an
outside ``module:Name`` is imported only when the user passes ``trust_code``
(``--trust-model-code``), with a warning. :func:`check_run_config` checks a config's fields
and their types before any of them is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from hcm.core.errors import UsageError
from hcm.model.registry import MODELS
from hcm.training import TrainingError
from hcm.training.inference import find_factory

log = logging.getLogger(__name__)

#: ``module:Name`` paths that earlier run configs recorded for registered models.
KNOWN_PATHS = {"hcm.model.hcmnet:build_model": "hcmnet", "hcm.model.hcmnet:HCMNet": "hcmnet"}

#: The fields of a run's config.json that evaluation reads, with their JSON types.
RUN_CONFIG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model_factory": str, "model": dict, "facts": dict, "data": dict, "train": dict, "cache": str,
    "recipe_hash": str,
}


class UntrustedModelError(UsageError):
    """A run config names model code outside hcm's registry, and the user did not vouch for it."""


def model_factory(name: str, trust_code: bool = False, source: str | Path = "the run config",
                  hint: str = "pass --trust-model-code") -> Callable:
    """The factory registered as ``name``; an outside ``module:Name`` only with ``trust_code``
    (``hint`` says how the user vouches for it in the command at hand)."""
    key = KNOWN_PATHS.get(name, name)
    if key not in MODELS:
        if not trust_code:
            raise UntrustedModelError(
                f"{source} names the model factory {name!r}, which is not one of hcm's models "
                f"({', '.join(MODELS)}). Loading it would import and run that module's code; nothing was "
                f"imported. If you trust this run folder, {hint}"
            )
        log.warning("importing the model factory %r named by %s (--trust-model-code): its module's code runs",
                    name, source)
    try:
        return find_factory(key)
    except TrainingError as error:  # the outside module or its attribute cannot be imported
        cause = error.__cause__
        raise UsageError(f"cannot import the model factory {name!r} named by {source} ({cause})") from cause


def check_run_config(config: Any, path: str | Path) -> dict[str, Any]:
    """``config`` if it holds every field evaluation reads, each of its JSON type; else a UsageError."""
    if not isinstance(config, dict):
        raise UsageError(f"{path} holds a {type(config).__name__}, not a run config (a JSON object)")
    problems = [f"{key} is missing" if key not in config else f"{key} is a {type(config[key]).__name__}"
                for key, kind in RUN_CONFIG_FIELDS.items()
                if key not in config or not isinstance(config[key], kind)]
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    for key in ("batch_size", "num_workers"):
        if key in train and (not isinstance(train[key], int) or isinstance(train[key], bool) or train[key] < 0):
            problems.append(f"train.{key} is {train[key]!r}")
    if problems:
        raise UsageError(f"{path} is not a valid run config: {'; '.join(problems)}. Pass a run folder written "
                         f"by `hcm train`")
    return config
