"""Optional run tracking with Weights & Biases (the `wandb` extra), as huggingtweets tracked its runs.

MIMICBOT_WANDB=off (default) | offline | online. Off, every method does nothing: a job's progress and its
training.json are in SQLite whatever this says. Offline, runs are written under `<data dir>/wandb/` for a
later `wandb sync`; online, they go to W&B (WANDB_API_KEY, WANDB_PROJECT, WANDB_ENTITY).

A run records what huggingtweets' did: the config (the request's hyperparameters and accounts, never the
posts), the loss curve step by step, the held-out eval (before and after), a table of sample posts, and
two artifacts: the dataset (each account's training text, as the recipe joins it) and the finished model.

The trainer uses it like this (three lines):

    tracker = Tracker.for_request(req)                   # before training: starts the run, logs the dataset
    tracker.log(step, {"loss": loss, "lr": lr})          # each step
    tracker.finish(info, final_dir)                      # after publishing: eval, samples, model artifact

A tracking failure never fails a training run: it is logged as a warning and tracking stops for that run.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from pathlib import Path

from ..cleaning import EOT
from ..config import Settings, load_settings
from ..errors import ConfigError
from .spec import TrainRequest

log = logging.getLogger(__name__)

MODES = ("off", "offline", "online")
SAMPLE_COLUMNS = ["prompt", "text"]


def run_config(req: TrainRequest) -> dict:
    """The request as a run's config: hyperparameters and who, without the posts' texts."""
    config = req.to_dict()
    config["accounts"] = [{k: v for k, v in a.items() if k not in ("texts", "parents")} for a in config["accounts"]]
    return config


def artifact_name(kind: str, model_id: str) -> str:
    """A W&B artifact name (letters, digits, '-', '_', '.') for this model."""
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)


def _numbers(metrics: dict, prefix: str = "") -> dict:
    """The finite numbers of a metrics dict (bools, None, text and NaN are not metrics)."""
    return {prefix + k: v for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class Tracker:
    """One training run's W&B run; with mode "off", a tracker that records nothing."""

    def __init__(self, mode: str = "off", *, project: str = "mimicbot", entity: str | None = None,
                 name: str | None = None, config: dict | None = None, directory: Path | None = None,
                 api_key: str | None = None):
        if mode not in MODES:
            raise ConfigError(f"MIMICBOT_WANDB must be one of {', '.join(MODES)} (got {mode!r})")
        self.mode = mode
        self.run = None
        self._wandb = None
        if mode == "off":
            return
        self._wandb = _import_wandb(mode)
        if api_key:
            os.environ.setdefault("WANDB_API_KEY", api_key)  # this (training) process only
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            # W&B's artifact staging and cache hold copies of the dataset (the posts): keep them beside the runs,
            # where `forget` finds them, not in the home folder (this training process only)
            os.environ.setdefault("WANDB_DATA_DIR", str(Path(directory) / "wandb" / "data"))
            os.environ.setdefault("WANDB_CACHE_DIR", str(Path(directory) / "wandb" / "cache"))
        self.run = self._wandb.init(
            mode=mode, project=project, entity=entity, name=name, config=config,
            dir=str(directory) if directory is not None else None,
            job_type="train", tags=["mimicbot"], reinit="create_new",
            settings=self._wandb.Settings(console="off", silent=True),
        )

    @classmethod
    def for_request(cls, req: TrainRequest, settings: Settings | None = None) -> Tracker:
        """The tracker the settings ask for, its run started and the dataset logged."""
        settings = settings or load_settings()
        tracker = cls(settings.mimicbot_wandb, project=settings.wandb_project, entity=settings.wandb_entity,
                      name=req.model_id, config=run_config(req), directory=settings.data_dir,
                      api_key=settings.secret("wandb_api_key"))
        tracker.log_dataset(req)
        return tracker

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def log(self, step: int, metrics: dict) -> None:
        """Numbers at a training step (the loss curve, learning rate, speed)."""
        if self.enabled:
            self._guard("log", lambda: self.run.log(_numbers(metrics), step=step))

    def log_dataset(self, req: TrainRequest) -> None:
        """Each account's kept posts as the recipe's training text (EOT-joined), one file an account."""
        if not self.enabled:
            return

        def log_it():
            artifact = self._wandb.Artifact(artifact_name("dataset", req.model_id), type="dataset",
                                            metadata={"accounts": run_config(req)["accounts"]})
            with tempfile.TemporaryDirectory(prefix="mimicbot-dataset-") as tmp:
                for account in req.accounts:
                    path = Path(tmp) / f"{account.network}-{account.handle}.txt"
                    path.write_text(EOT + EOT.join(account.texts) + EOT, encoding="utf-8")
                    artifact.add_file(str(path))  # copied into W&B's staging area now
            self.run.log_artifact(artifact)

        self._guard("log the dataset", log_it)

    def finish(self, summary: dict, model_dir: Path | None = None) -> None:
        """End the run: the held-out eval and other totals, the samples table, the model as an artifact.
        `summary` is the training.json dict (eval, generation.samples, steps, tokens_per_s, ...)."""
        if not self.enabled:
            return

        def finish_it():
            totals = {**_numbers(summary), **_numbers(summary.get("eval") or {}, "eval/")}
            self.run.summary.update(totals)
            generation = summary.get("generation") or {}
            samples = generation.get("samples") or []
            if samples:
                table = self._wandb.Table(columns=SAMPLE_COLUMNS,
                                          data=[[generation.get("prompt", ""), text] for text in samples])
                self.run.log({"samples": table})
            if model_dir is not None:
                artifact = self._wandb.Artifact(artifact_name("model", summary.get("model_id") or self.run.name),
                                                type="model", metadata=_numbers(summary.get("eval") or {}))
                artifact.add_dir(str(model_dir), policy="immutable")  # a published model never changes
                self.run.log_artifact(artifact)

        self._guard("finish the run", finish_it)
        self.close()

    def close(self, exit_code: int = 0) -> None:
        """Finish the run and wait until W&B has written all of it (`finish` alone returns while artifacts
        are still being written; a training process that exits then would lose them)."""
        if self.run is not None:
            run, self.run = self.run, None
            try:
                run.finish(exit_code=exit_code)
                self._wandb.teardown()
            except Exception as e:  # noqa: BLE001 - see _guard
                log.warning("W&B: could not close the run: %s", e)

    def _guard(self, what: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - tracking must never fail the training it watches
            log.warning("W&B: could not %s (%s: %s); tracking stops for this run", what, type(e).__name__, e)
            self.close(exit_code=1)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exit_code=1 if exc_type else 0)


def _import_wandb(mode: str):
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"MIMICBOT_WANDB={mode} needs Weights & Biases: pip install 'mimicbot[wandb]'") from None
    return wandb
