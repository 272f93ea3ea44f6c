"""``custom``: any corpus of one's own in the MMSA layout, its facts read from the labels.

    <root>/label.csv                          video_id, clip_id, text, label [, mode] (+ any columns)
    <root>/Raw/<video_id>/<clip_id>.mp4       also .avi .mkv .mov; .wav .flac for audio-only clips
    <root>/dataset.json                       optional: {"task", "label_range", "classes",
                                              "language", "split_seed"}

The task follows the labels: numbers make a regression task whose range is the observed one
(or ``--label-range LOW,HIGH``), names make a classification task whose classes are the names
sorted (or ``--classes a,b,c``, which fixes their order). A row whose label does not fit (not a
number, outside the range, not one of the classes) is rejected naming file and line. The split
comes from ``mode``; without that column (and without ``--split-file``) every video goes whole
to train, valid or test (70 / 10 / 20 % of the clips) in an order drawn from ``--split-seed``.

The facts (task, range or classes, metrics, streams) and the split rule are recorded in the
cache's recipe, so training, evaluation and prediction need no config file for the corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hcm.core.errors import UsageError
from hcm.core.files import read_json_object
from hcm.core.names import CLASSIFICATION, REGRESSION
from hcm.pipeline.datasets.base import (
    SPLITS,
    AnnotationError,
    DatasetAdapter,
    Utterance,
    register_dataset,
    require_paths,
)
from hcm.pipeline.datasets.language import LANGUAGES
from hcm.pipeline.datasets.mmsa_layout import (
    LAYOUT,
    finite,
    read_label_rows,
    read_layout,
    split_counts,
)
from hcm.pipeline.datasets.splits import assign_by_group

log = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
JSON_KEYS = ("task", "label_range", "classes", "language", "split_seed")
SPLIT_SHARES = {"train": 0.7, "valid": 0.1, "test": 0.2}  # of clips, when hcm makes the split
STREAMS = {"text": ["roberta", "clip_text"], "video": ["efficientnet", "clip_image"], "audio": ["esresnext", "mel"]}


def parse_label_range(value: Any, where: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` or ``[low, high]`` as a pair of finite floats with low < high."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (finite(str(part).strip()) for part in parts)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: label range {value!r} is not two numbers LOW,HIGH (e.g. -3,3)") from None
    if not low < high:
        raise UsageError(f"{where}: label range {value!r} needs LOW < HIGH")
    return low, high


def parse_classes(value: Any, where: str) -> list[str]:
    """``"a,b,c"`` or ``["a", "b", "c"]``: at least two distinct non-empty names."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise UsageError(f"{where}: classes {value!r} are not a list of names")
    names = [str(name).strip() for name in names]
    if len(names) < 2 or "" in names or len(set(names)) < len(names):
        raise UsageError(f"{where}: classes {value!r} must be two or more distinct non-empty names (a,b,c)")
    return names


@register_dataset
class CustomAdapter(DatasetAdapter):
    """A corpus of one's own in the MMSA layout."""

    name = "custom"
    task = REGRESSION
    source = ("your own clips: write label.csv (video_id, clip_id, text, label, mode) and put each clip at "
              "Raw/<video_id>/<clip_id>.mp4 (docs/datasets.md, 'Your own clips, in five minutes').")

    def __init__(self) -> None:
        self.classes: list[str] | None = None
        self.label_range: tuple[float, float] | None = None
        self.given: dict[str, Any] = {}  # facts given by flags or dataset.json
        self.split_seed = 0
        self.split_rule: dict[str, Any] = {}
        self.split_file = False
        self._report: list[str] = []

    def configure(self, options: Mapping[str, Any], root: Path | None = None) -> None:
        """Facts from ``<root>/dataset.json``, then from the flags (which win)."""
        given: dict[str, Any] = {}
        path = Path(root) / DATASET_JSON if root is not None else None
        if path is not None and path.is_file():
            data = read_json_object(path, "dataset facts")
            unknown = sorted(set(data) - set(JSON_KEYS))
            if unknown:
                raise UsageError(f"{path}: unknown key(s) {unknown}; known: {list(JSON_KEYS)}")
            given = {key: (value, str(path)) for key, value in data.items()}
        if any(options.get(key) is not None for key in ("label_range", "classes")):
            for key in ("label_range", "classes", "task"):  # the flag decides the task
                given.pop(key, None)
        for key, value in options.items():
            if value is not None:
                given[key] = (value, "--" + key.replace("_", "-"))
        self._apply(given)

    def _apply(self, given: dict[str, tuple[Any, str]]) -> None:
        for key, (value, where) in given.items():
            if key == "label_range":
                self.given[key] = parse_label_range(value, where)
            elif key == "classes":
                self.given[key] = parse_classes(value, where)
            elif key == "task" and value not in (REGRESSION, CLASSIFICATION):
                raise UsageError(f"{where}: task {value!r} is not {REGRESSION!r} or {CLASSIFICATION!r}")
            elif key == "language" and value not in LANGUAGES:
                raise UsageError(f"{where}: language {value!r} is not one of {sorted(LANGUAGES)}")
            elif key == "split_seed" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise UsageError(f"{where}: split seed {value!r} is not a non-negative integer")
            else:
                self.given[key] = value
        if "label_range" in self.given and "classes" in self.given:
            raise UsageError("give a label range (regression) or classes (classification), not both")
        task = self.given.get("task")
        if task and (task == REGRESSION) == ("classes" in self.given):
            raise UsageError(f"task {task!r} does not fit the classes or label range given with it")
        self.language = self.given.get("language", "en")
        self.spacy_model, self.text_model = LANGUAGES[self.language]
        self.split_seed = int(self.given.get("split_seed", 0))

    def check_root(self, root: Path) -> None:
        require_paths(self.name, Path(root), ["label.csv", "Raw/"], self.source, LAYOUT)

    def select(self, root: Path, splits: list[str] | None = None, split_file: Any = None,
               rejected: bool = False) -> Any:
        self.split_file = split_file is not None  # the file's split replaces the one read here
        return super().select(root, splits, split_file, rejected)

    def read(self, root: Path) -> list[Utterance]:
        path = Path(root) / "label.csv"
        rows, has_mode = read_label_rows(path)
        self._report = []
        self._decide_task(path, [(row.values.get("label") or "").strip() for row in rows])
        items = read_layout(Path(root), self.parse_label, rows, has_mode)
        if not any(u.dropped is None for u in items):
            example = next(u.dropped[1] for u in items if u.dropped)
            raise AnnotationError(f"{path}: no row can be used (e.g. {example}); fix label.csv")
        if self.split_file:
            self.split_rule = {"method": "split file"}
        elif has_mode:
            self.split_rule = {"method": "mode column"}
        else:
            self._group_split(path, items)
        return items

    def _decide_task(self, path: Path, labels: list[str]) -> None:
        """Task and range or classes: as given, else from the labels (numbers or names)."""
        self.classes, self.label_range = None, None
        present = [label for label in labels if label]
        if not present:
            raise AnnotationError(f"{path}: the label column is empty in every row; write each clip's label "
                                  f"(a number for scores, a name for classes)")
        numbers = [value for value in map(_number, present) if value is not None]
        task = self.given.get("task") or (CLASSIFICATION if "classes" in self.given else REGRESSION
                                          if "label_range" in self.given or 2 * len(numbers) > len(present)
                                          else CLASSIFICATION)
        self.task = task
        if task == REGRESSION:
            self.label_range = self.given.get("label_range") or _observed_range(path, numbers)
            how = "given" if "label_range" in self.given else "observed; fix it with --label-range LOW,HIGH"
            self._report.append(f"task: regression, labels in [{self.label_range[0]:g}, {self.label_range[1]:g}] "
                                f"({how})")
        else:
            self.classes = self.given.get("classes") or sorted(set(present))
            if len(self.classes) < 2:
                raise AnnotationError(f"{path}: every label is {self.classes!r}; a classification task needs "
                                      f"two or more classes")
            how = "given" if "classes" in self.given else "sorted; fix the order with --classes a,b,c"
            self._report.append(f"task: classification, classes {', '.join(self.classes)} ({how})")

    def parse_label(self, value: str) -> float | int:
        """A score inside the range (regression) or a class name's index (classification)."""
        if not value:
            raise ValueError("empty")
        if self.task == CLASSIFICATION:
            if value not in self.classes:
                raise ValueError(f"not one of the classes {self.classes} (--classes lists them all)")
            return self.classes.index(value)
        number = _number(value)
        if number is None:
            raise ValueError("not a number (the labels are scores, as most rows say)")
        low, high = self.label_range
        if not low <= number <= high:
            raise ValueError(f"outside the label range [{low:g}, {high:g}]")
        return number

    def _group_split(self, path: Path, items: list[Utterance]) -> None:
        """Whole videos to train / valid / test in a seeded order (shares of SPLIT_SHARES)."""
        usable = [u for u in items if u.dropped is None]
        sizes: dict[str, int] = {}
        for u in usable:
            sizes[u.group] = sizes.get(u.group, 0) + 1
        videos = sorted(sizes)
        if len(videos) < len(SPLITS):
            raise AnnotationError(f"{path}: no mode column and only {len(videos)} video(s); a split by video needs "
                                  f"at least 3. Add a mode column (train/valid/test) or give --split-file")
        order = [videos[i] for i in np.random.default_rng(self.split_seed).permutation(len(videos))]
        split_of = dict(zip(order, assign_by_group([sizes[video] for video in order], SPLIT_SHARES)))
        for u in items:
            u.split = split_of.get(u.group, "") if u.dropped is None else u.split
        counts = split_counts(items)
        self.split_rule = {"method": "by video, seeded", "seed": self.split_seed, "shares": SPLIT_SHARES,
                           "clips": counts, "videos": {s: sorted(v for v, t in split_of.items() if t == s)
                                                       for s in SPLITS}}
        self._report.append(f"split: no mode column, so whole videos went to train/valid/test with seed "
                            f"{self.split_seed}: " + ", ".join(f"{s} {counts[s]} clips" for s in SPLITS)
                            + " (--split-seed N draws another; the split is in the cache recipe)")

    def facts(self) -> dict[str, Any]:
        """The dataset facts of the corpus read last (as configs/datasets/<name>.json holds them)."""
        regression = self.task == REGRESSION
        streams = dict(STREAMS, text=["roberta"]) if self.language != "en" else dict(STREAMS)
        return {"name": self.name, "task": self.task, "num_classes": 0 if regression else len(self.classes),
                "class_names": [] if regression else list(self.classes),
                "key_metric": "mae" if regression else "weighted_f1", "higher_is_better": not regression,
                "label_range": list(self.label_range) if regression else None, "streams": streams, "metrics": ""}

    def recipe(self) -> dict[str, Any]:
        return {"facts": self.facts(), "split": self.split_rule, "language": self.language}

    def report(self) -> list[str]:
        return list(self._report)


def _number(value: str) -> float | None:
    try:
        return finite(value)
    except ValueError:
        return None


def _observed_range(path: Path, numbers: list[float]) -> tuple[float, float]:
    if not numbers:
        raise AnnotationError(f"{path}: no numeric label; give --label-range or --classes")
    low, high = min(numbers), max(numbers)
    if low == high:
        raise AnnotationError(f"{path}: every label is {low:g}; give the range with --label-range LOW,HIGH")
    return low, high
