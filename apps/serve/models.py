"""The models behind the explain and predict pages: each run's model (``hcm explain``) and predictor
(``hcm predict``: the model and the extraction of its cache) loaded once, on first use, and kept.

All model work runs on one worker thread: the event loop only waits for it, so every other page
keeps answering while a clip is extracted and predicted, and no two forward passes share a model
(``hcm explain`` records a forward pass with hooks on the model).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from hcm.apps.explain import RunModel, cached_items, explain_item
from hcm.apps.predict import PredictError, Prediction, Predictor
from hcm.apps.report import png_uri
from hcm.apps.serve.pages import PLOTS
from hcm.core.workspace import Workspace
from hcm.pipeline.clip import ClipInput

T = TypeVar("T")
KEPT_EXPLANATIONS = 64


@dataclass
class Explanation:
    """``hcm explain``'s document of one item and its picture as a data URI."""

    doc: dict[str, Any]
    picture: str


@dataclass
class ClipResult:
    """A prediction on an uploaded clip, with its explanation."""

    prediction: Prediction
    explanation: Explanation | None


class Models:
    """Run models and predictors by run folder, used on one worker thread."""

    def __init__(self, workspace: Workspace, device: str = "auto") -> None:
        self.workspace = workspace
        self.device = device
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hcm-serve-model")
        self._run_models: dict[Path, RunModel] = {}
        self._predictors: dict[Path, Predictor] = {}
        self._explained: OrderedDict[tuple, Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many models were loaded (each run's once)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the worker thread, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, work, *args)

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ on the worker thread

    def run_model(self, run_dir: Path) -> RunModel:
        if run_dir not in self._run_models:
            self._run_models[run_dir] = RunModel.load(run_dir, self.device)
            self.loads += 1
        return self._run_models[run_dir]

    def predictor(self, run_dir: Path) -> Predictor:
        if run_dir not in self._predictors:
            self._predictors[run_dir] = Predictor.load(self.workspace, run_dir, self.device)
            self.loads += 1
        return self._predictors[run_dir]

    def kept(self, run_dir: Path, split: str, item_id: str) -> Explanation | None:
        """An explanation made before (any thread: a visit again does not wait behind predictions)."""
        with self._lock:
            found = self._explained.get((run_dir, split, item_id))
            if found is not None:
                self._explained.move_to_end((run_dir, split, item_id))
            return found

    def explain_cached(self, run_dir: Path, split: str, item_id: str) -> Explanation:
        """``hcm explain --ids ITEM`` for one cached item of the run's cache, kept for the next visit."""
        found = self.kept(run_dir, split, item_id)
        if found is not None:
            return found
        run = self.run_model(run_dir)
        (item,) = cached_items(Path(run.config["cache"]), split, [item_id])
        explained = picture(explain_item(run, item))
        with self._lock:
            self._explained[(run_dir, split, item_id)] = explained
            while len(self._explained) > KEPT_EXPLANATIONS:
                self._explained.popitem(last=False)
        return explained

    def predict_clip(self, run_dir: Path, given: ClipInput, explain: bool = True, name: str = "") -> ClipResult:
        """``hcm predict`` on one clip (and ``hcm explain`` on it, the item named ``name``): one extraction
        for both."""
        predictor = self.predictor(run_dir)
        extracted = predictor.extractor([given])
        (result,) = replace(predictor, extractor=Replay(predictor.extractor, extracted))([given])  # same model
        if isinstance(result, PredictError):
            raise result
        item = extracted[0]
        item.id = Path(name).stem or Path(given.clip).stem
        return ClipResult(result, picture(explain_item(predictor, item, with_label=False)) if explain else None)


class Replay:
    """A predictor's extractor that answers with the items it extracted already, so that a prediction and
    its explanation share one extraction; everything else (its notes) is the extractor's."""

    def __init__(self, extractor: Any, items: list[Any]) -> None:
        self.extractor, self.items = extractor, items

    def __call__(self, inputs: Any) -> list[Any]:
        return list(self.items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.extractor, name)


def picture(doc: dict[str, Any]) -> Explanation:
    """The explanation's picture (``hcm explain``'s PNG), drawn under the plot lock."""
    from hcm.apps.explain_plot import plot_explanation

    with PLOTS:
        return Explanation(doc, png_uri(lambda out: plot_explanation(doc, out)))
