"""Experiment trackers (run.tracker): MLflow, TensorBoard or W&B, all offline, all optional.

Only the driver logs: the tracker belongs to the Simulation, which lives in the driver
process; actors never see one. A tracked run gets the resolved config as parameters, the
provenance entry as tags, every numeric column of every metrics row at step = round, and the
run folder's files as artifacts.

The learning metrics are logged again against two more axes. Trackers count steps in
integers, so MLflow and TensorBoard get them in integer units: `by_comm_kib/<metric>` at
step = cumulative KiB communicated (comm_bytes_cum // 1024) and `by_sim_ms/<metric>` at
step = simulated milliseconds (where a row has `sim_time_s`). W&B takes float axes, so there
the same series are plotted against comm_gib_cum and sim_time_s.

Each library is imported lazily; a missing one is a ConfigError naming its extra, raised by
`check_tracker` before any work starts. `TrackerCallback` connects a tracker to a run.
"""

from __future__ import annotations

import importlib
import json
import logging
import numbers
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fslsage_ray.config import ConfigError, RunConfig, config_to_dict, flatten
from fslsage_ray.config.keys import is_logged
from fslsage_ray.outputs.callbacks import Row, RunCallback, RunInfo

log = logging.getLogger("fslsage_ray")

# tracker -> (module its import needs, the extra that installs it)
LIBRARIES = {
    "mlflow": ("mlflow", "mlflow"),
    "tensorboard": ("torch.utils.tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}
# extra axis: (row column, metric prefix for integer-step trackers, step per unit of it)
AXES = (("comm_bytes_cum", "by_comm_kib", 1 / 1024), ("sim_time_s", "by_sim_ms", 1000.0))
W_AND_B_AXES = {"by_comm_kib": "comm_gib_cum", "by_sim_ms": "sim_time_s"}  # float axes
MAX_VALUE = 5000  # MLflow's tag and parameter limits are of this order


def check_tracker(run: RunConfig) -> None:
    """Refuse a tracker whose library is not installed, naming the extra that installs it."""
    if run.tracker == "none":
        return
    module, extra = LIBRARIES[run.tracker]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"run.tracker={run.tracker} needs the {extra} library ({exc}); "
            f"install it with: pip install 'fslsage-ray[{extra}]'"
        ) from exc


def numeric(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's numbers (booleans as 0/1); text columns such as `algorithm` are left out."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (numbers.Real, np.bool_))}


def axis_series(row: Mapping[str, Any], metrics: Sequence[str]) -> list[tuple[str, int, dict]]:
    """(prefix, integer step, {metric: value}) for each extra axis present in the row."""
    values = {m: float(row[m]) for m in metrics if m in row and row[m] is not None}
    return [
        (prefix, int(row[column] * per_unit), values)
        for column, prefix, per_unit in AXES
        if row.get(column) is not None
    ]


def parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The resolved config as flat string parameters, without the tracker's own address."""
    flat = flatten(config)
    return {k: _text(v) for k, v in flat.items() if is_logged(k)}


def provenance_tags(entry: Mapping[str, Any]) -> dict[str, str]:
    """The provenance entry as flat string tags (data files by name: `data_sha256.<file>`)."""
    entry = dict(entry)
    hashes = entry.pop("data_sha256", {}) or {}
    tags = {k: _text(v) for k, v in flatten(entry).items()}
    tags.update({f"data_sha256.{Path(f).name}": h for f, h in hashes.items()})
    return {re.sub(r"[^\w./ -]", "_", k): v for k, v in tags.items()}


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_VALUE]


class Tracker:
    """One tracked run: start, a row per round, artifacts, finish (also after a failure).

    `run_dir` is where file-based trackers write (TensorBoard, W&B); `store_dir` holds
    MLflow's default file store, shared by sibling runs (default: the run folder's parent).
    """

    def __init__(
        self,
        run: RunConfig,
        run_dir: Path | None,
        axis_metrics: Sequence[str],
        store_dir: Path | None = None,
    ) -> None:
        self.run = run
        self.run_dir = run_dir
        self.axis_metrics = tuple(axis_metrics)
        self.store_dir = store_dir or (run_dir.parent if run_dir else Path(run.out_dir))
        self.logged: set[int] = set()
        self.started = False

    def start(self, name: str, config: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        self._start(name, config, provenance)
        self.started = True

    def _start(self, name: str, config: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_round(self, row: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        raise NotImplementedError

    def finish(self, ok: bool) -> None:
        raise NotImplementedError

    def log_new_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows of rounds not logged yet: after a resume the restored rows go in first, and a
        round redone after a lost worker is not logged twice."""
        for row in rows:
            if int(row["round"]) not in self.logged:
                self.log_round(row)
                self.logged.add(int(row["round"]))

    def close(self, ok: bool, rows: Iterable[Mapping[str, Any]], artifacts: Iterable[Path]) -> None:
        """Last rows, artifacts, then the run's end state. After a failed run a tracker error
        is only logged, so that it does not hide the run's own error."""
        if not self.started:
            return
        try:
            try:
                self.log_new_rows(rows)
                self.log_artifacts([Path(p) for p in artifacts if Path(p).is_file()])
            finally:
                self.finish(ok)
        except Exception:
            if ok:
                raise
            log.warning("the %s tracker could not record the failed run", self.run.tracker)


class MlflowTracker(Tracker):
    """MlflowClient on a tracking URI (default: a file store `mlruns/` next to the run folder,
    so the runs of a comparison share one); no global `mlflow.start_run` state is touched."""

    def uri(self) -> str:
        if self.run.tracker_uri:
            return self.run.tracker_uri
        return (self.store_dir / "mlruns").resolve().as_uri()

    def _start(self, name, config, provenance) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        uri = self.uri()
        if uri.startswith("file:"):  # MLflow 3.x asks file-store users to opt in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        project = self.run.tracker_project
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(project)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        params = [Param(k, v) for k, v in parameters(config).items()]
        tags = [RunTag(k, v) for k, v in provenance_tags(provenance).items()]
        commit = provenance.get("source", {}).get("git_commit")
        if commit:  # shown by MLflow's UI as the run's source version
            tags.append(RunTag("mlflow.source.git.commit", commit))
        for i in range(0, max(len(params), len(tags)), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100], tags=tags[i : i + 100])

    def log_round(self, row) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(row["round"])
        metrics = [Metric(k, v, stamp, step) for k, v in numeric(row).items()]
        for prefix, axis_step, values in axis_series(row, self.axis_metrics):
            metrics += [Metric(f"{prefix}/{k}", v, stamp, axis_step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifacts(self, paths) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class TensorBoardTracker(Tracker):
    """Event files (default: <run folder>/tensorboard) written with torch's SummaryWriter.
    The config goes to the HPARAMS tab and as text; scalars are stored as 32-bit floats."""

    def logdir(self) -> Path:
        if self.run.tracker_uri:
            return Path(self.run.tracker_uri)
        if self.run_dir is None:
            raise ConfigError(
                "run.tracker=tensorboard writes into the run folder; with no run folder, set "
                "run.tracker_uri to a log folder"
            )
        return self.run_dir / "tensorboard"

    def _start(self, name, config, provenance) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step=0 hides events of an earlier start in this folder (a resume logs the
        # restored rows again; an overwritten run's old events would mix in)
        self.writer = SummaryWriter(str(self.logdir()), purge_step=0)
        params = parameters(config)
        values = {k: v for k, v in flatten(config).items() if is_logged(k)}
        # the HPARAMS tab takes numbers, text and booleans; the rest (None, lists) as text
        plain = {
            k: v if isinstance(v, (bool, int, float, str)) else _text(v) for k, v in values.items()
        }
        if self.axis_metrics:  # a training run: the HPARAMS tab (not the comparison's run)
            summaries = hparams(plain, {m: 0.0 for m in self.axis_metrics})
            for summary in summaries:  # written directly: add_hparams would add a sub-run
                self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", _fenced(json.dumps(params, indent=1)))
        self.writer.add_text("provenance", _fenced(json.dumps(provenance_tags(provenance))))

    def log_round(self, row) -> None:
        step = int(row["round"])
        for key, value in numeric(row).items():
            self.writer.add_scalar(key, value, step)
        for prefix, axis_step, values in axis_series(row, self.axis_metrics):
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, axis_step)
        self.writer.flush()

    def log_artifacts(self, paths) -> None:
        """Figures as images and text files as text; other files stay in the run folder."""
        from PIL import Image

        for path in paths:
            path = Path(path)
            if path.suffix == ".png":
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"figures/{path.stem}", pixels, dataformats="HWC")
            elif path.suffix in (".md", ".yaml", ".json", ".log"):
                text = path.read_text(errors="replace")
                self.writer.add_text(
                    f"files/{path.name}", text if path.suffix == ".md" else _fenced(text)
                )

    def finish(self, ok: bool) -> None:
        self.writer.add_text("status", "finished" if ok else "failed")
        self.writer.close()


class WandbTracker(Tracker):
    """W&B in offline mode (its run folder under <run folder>/wandb; upload later with
    `wandb sync`). The provenance goes into the run's config under `provenance`."""

    def _start(self, name, config, provenance) -> None:
        import wandb

        where = self.run.tracker_uri or self.run_dir
        params = {k: v for k, v in flatten(config).items() if is_logged(k)}
        self.wb = wandb.init(
            project=self.run.tracker_project,
            name=name,
            dir=str(where) if where else None,
            mode="offline",
            config=params | {"provenance": provenance_tags(provenance)},
            reinit="create_new",  # never reuse or end a run the caller has open
            save_code=False,
            settings=wandb.Settings(silent=True),
        )
        for prefix, axis in W_AND_B_AXES.items():
            self.wb.define_metric(axis)
            self.wb.define_metric(f"{prefix}/*", step_metric=axis)

    def log_round(self, row) -> None:
        values = numeric(row)
        for prefix, _, series in axis_series(row, self.axis_metrics):
            values.update({f"{prefix}/{k}": v for k, v in series.items()})
        self.wb.log(values, step=int(row["round"]))

    def log_artifacts(self, paths) -> None:
        for path in paths:
            path = Path(path)
            self.wb.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self, ok: bool) -> None:
        self.wb.finish(exit_code=0 if ok else 1)


TRACKER_CLASSES = {
    "mlflow": MlflowTracker,
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
}


def make_tracker(
    run: RunConfig,
    run_dir: Path | None,
    axis_metrics: Sequence[str],
    store_dir: Path | None = None,
) -> Tracker | None:
    """The configured tracker (its library checked now), or None for run.tracker=none."""
    check_tracker(run)
    if run.tracker == "none":
        return None
    tracker = TRACKER_CLASSES[run.tracker](run, run_dir, axis_metrics, store_dir)
    if isinstance(tracker, TensorBoardTracker):
        tracker.logdir()  # no folder to write to: refused now, not after training
    return tracker


class TrackerCallback(RunCallback):
    """A tracked run: started with the config and provenance, a row per round (restored
    rows first), and at the end the run folder's files and the end state."""

    def __init__(self, tracker: Tracker, artifacts: Sequence[str]) -> None:
        self.tracker = tracker
        self.artifacts = tuple(artifacts)  # file names in the run folder
        self.run: RunInfo | None = None

    def on_run_start(self, run: RunInfo) -> None:
        self.run = run
        name = run.run_dir.name if run.run_dir else run.config.run.name
        self.tracker.start(name, config_to_dict(run.config), run.provenance)

    def on_round_recorded(self, row: Row) -> None:
        if self.run is not None:
            self.tracker.log_new_rows(self.run.rows)

    def on_run_end(self, ok: bool) -> None:
        if self.run is None:
            return
        run_dir = self.run.run_dir
        files = [run_dir / name for name in self.artifacts] if run_dir else []
        self.tracker.close(ok, self.run.rows, files)


def _fenced(text: str) -> str:
    return f"```\n{text}\n```"
