"""Training on a Ray cluster (MIMICBOT_EXECUTOR=ray, RAY_ADDRESS): same jobs, same states, same events.

The pool (pool.py) still claims jobs from SQLite and supervises each in one of its threads
(supervisor.run_job); only the training process moves. `RayExecutor` implements the supervisor's Executor
protocol: instead of a local child, each job is one Ray task:

- it asks Ray for one GPU when the cluster has GPUs (else CPU only), and runs in a fresh worker process
  (`max_calls=1`, like the local spawned child: nothing of one run outlives it, GPU memory included);
- the trainer's events go to a small channel actor that `RayRun` drains: the supervisor reads them through
  the same Run protocol as a local child's pipe, so progress is stored the same way, the last message is
  "done" (with training.json) or "error";
- cancel (and shutdown) force-cancels the task, which kills its worker process.

Where the model lands (MIMICBOT_RAY_STORAGE):
- "shared" (default): the models directory is a shared filesystem mounted at the same path on every node
  (NFS, CephFS, ...). The task trains in `<models_dir>/.work/job-N` and publishes by a rename, as locally.
- "upload": nodes share nothing. The task trains in a scratch folder of its node and returns the finished
  model folder as a tar archive through Ray's object store; the supervisor unpacks it into its work dir and
  publishes it into its own models directory. A LoRA persona ships as its adapter folder (a few MB, never its
  base's weights); an adapter whose base was a folder on the node (the tiny base in the node's scratch folder, a
  local base) is made to name this host's copy of that base before it is installed (`rebase_adapter`).

Every node needs mimicbot installed at the same version (the project's Docker image, with the `ray` extra).
W&B tracking settings (MIMICBOT_WANDB, WANDB_PROJECT, WANDB_ENTITY) are passed to the task; its API key is
not (it would be visible in Ray's dashboard): give the nodes WANDB_API_KEY in their own environment.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import shutil
import tarfile
import tempfile
import threading
import traceback
from collections import deque
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, MimicbotError
from ..store import Store
from . import jobs
from .spec import TrainRequest
from .supervisor import LaunchError, Outcome

log = logging.getLogger(__name__)

FORWARDED_ENV = {"MIMICBOT_WANDB": "mimicbot_wandb", "WANDB_PROJECT": "wandb_project", "WANDB_ENTITY": "wandb_entity"}


class RayExecutor:
    """The supervisor's Executor for Ray: each run is one Ray task (see the module's docstring)."""

    _connect_lock = threading.Lock()

    def __init__(self, settings: Settings):
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("MIMICBOT_EXECUTOR=ray needs Ray: pip install 'mimicbot[ray]'")
        self.settings = settings
        self.upload = settings.mimicbot_ray_storage == "upload"

    def connect(self):
        """Ray, connected to RAY_ADDRESS (or an instance already initialised in this process, or a new local
        one when no address is set)."""
        import ray

        with self._connect_lock:
            if not ray.is_initialized():
                ray.init(address=self.settings.ray_address or None)
        return ray

    def launch(self, store: Store, job_id: int, req: TrainRequest, work_dir: Path, log_path: Path,
               slot: int) -> RayRun:
        try:
            ray = self.connect()
        except Exception as e:  # noqa: BLE001 - any failure to reach the cluster fails this job, plainly
            where = self.settings.ray_address or "a local Ray instance"
            raise LaunchError(f"cannot connect to Ray at {where}: {type(e).__name__}: {e}") from None
        req = absolute_base(req)
        channel = _remote(ray, _Channel, num_cpus=0).remote()
        task = _remote(ray, train_on_node, max_calls=1).options(
            num_gpus=1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0,
            name=f"mimicbot-train-{job_id}",
            runtime_env={"env_vars": self._forwarded_env()},
        ).remote(req.to_dict(), str(work_dir), channel, self.upload)
        jobs.set_worker(store, job_id, None)  # no local process: the job runs on the cluster
        log.info("job %s: training %s on Ray (%s storage)", job_id, req.model_id, "upload" if self.upload else "shared")
        final_dir = Path(req.models_dir) / req.model_id
        return RayRun(ray, channel, task, work_dir, final_dir if self.upload else None, req.base_model)

    def _forwarded_env(self) -> dict[str, str]:
        values = {name: getattr(self.settings, field) for name, field in FORWARDED_ENV.items()}
        return {name: str(value) for name, value in values.items() if value is not None}


def absolute_base(req: TrainRequest) -> TrainRequest:
    """The request with a local base folder named by its absolute path: a Ray worker does not run in this process's
    working directory, so a relative path would name nothing (or another folder) there."""
    from dataclasses import replace

    from .basemodel import base_kind

    path = Path(req.base_model).expanduser()
    if base_kind(req.base_model) != "local" or path.is_absolute():
        return req
    return replace(req, base_model=str(path.resolve()))


class RayRun:
    """One Ray task as the supervisor's Run: its channel read like a pipe (`recv` raises EOFError once the task
    has ended and every message it sent has been read); `end` cancels a task that is not finishing; `complete`
    installs an uploaded model."""

    def __init__(self, ray, channel, task, work_dir: Path, upload_to: Path | None, base_model: str = "gpt2"):
        self.ray, self.channel, self.task = ray, channel, task
        self.work_dir, self.upload_to, self.base_model = work_dir, upload_to, base_model
        self.buffer: deque[dict] = deque()
        self.ended = False

    def poll(self, timeout: float) -> bool:
        if not self.buffer and not self.ended:
            ended = bool(self.ray.wait([self.task], timeout=timeout)[0])
            self.buffer.extend(self.ray.get(self.channel.drain.remote()))  # after `ended`: nothing is missed
            self.ended = ended and not self.buffer
        return bool(self.buffer) or self.ended

    def recv(self) -> dict:
        if self.buffer:
            return self.buffer.popleft()
        raise EOFError

    def end(self, graceful: bool) -> None:
        if not graceful:
            self.ray.cancel(self.task, force=True)  # kills the task's worker process
        self.ray.kill(self.channel)

    def death(self) -> str:
        """Why the task ended without a last message (its worker died, its node was lost, ...)."""
        try:
            self.ray.get(self.task, timeout=10)
        except Exception as e:  # noqa: BLE001 - Ray's error types vary with the cause; the text is what a person reads
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return f"the Ray training task failed: {type(e).__name__}{': ' + first if first else ''}"
        return "the Ray training task ended without reporting a result"

    def complete(self, outcome: Outcome) -> Outcome:
        if self.upload_to is not None:
            final = install_archive(self.ray.get(self.task), self.work_dir, self.upload_to, self.base_model)
            outcome.result = {**(outcome.result or {}), "path": str(final)}
        return outcome


# -- the task, on a node --------------------------------------------------------------------------


def train_on_node(request: dict, work_dir: str, channel, upload: bool) -> bytes | None:
    """Runs in a Ray worker process: the trainer, each of its events sent to `channel`, then a last "done" or
    "error" message, delivered before the task returns. With `upload`, trains in a scratch folder of this node
    and returns the published model folder as a tar archive."""
    import ray

    from .trainer import train

    req = TrainRequest.from_dict(request)
    scratch = Path(tempfile.mkdtemp(prefix="mimicbot-ray-")) if upload else None
    archive = None
    try:
        if scratch is not None:
            req.models_dir, work_dir = str(scratch / "models"), str(scratch / "models" / ".work" / "job")
            Path(work_dir).parent.mkdir(parents=True)
        result = train(req, Path(work_dir), lambda event: channel.put.remote(event))
        if scratch is not None:
            archive = pack_dir(Path(result["path"]))
        message = {"type": "done", "result": result}
    except MimicbotError as e:
        message = {"type": "error", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - anything the trainer raises ends the job, with its type
        traceback.print_exc()
        message = {"type": "error", "message": f"{type(e).__name__}: {e}"}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    ray.get(channel.put.remote(message))
    return archive


class _Channel:
    """The events of one task, in the order it sent them (a Ray actor; calls from one caller run in order)."""

    def __init__(self) -> None:
        self._items: list[dict] = []

    def put(self, item: dict) -> None:
        self._items.append(item)

    def drain(self) -> list[dict]:
        items, self._items = self._items, []
        return items


_REMOTES: dict = {}


def _remote(ray, target, **options):
    """`ray.remote(**options)(target)`, made once per process (Ray is imported only when it is used)."""
    key = (target, tuple(sorted(options.items())))
    if key not in _REMOTES:
        _REMOTES[key] = ray.remote(**options)(target)
    return _REMOTES[key]


# -- uploading a model ------------------------------------------------------------------------


def pack_dir(folder: Path) -> bytes:
    """A folder as an uncompressed tar archive (weights do not compress), its entries relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def install_archive(archive: bytes, work_dir: Path, final_dir: Path, base_model: str | None = None) -> Path:
    """Unpack a model archive into `work_dir`, then install it at `final_dir` as the trainer does (a LoRA persona
    made to name this host's copy of its base first: `rebase_adapter`)."""
    from ..modelfolder import install

    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        tar.extractall(work_dir, filter="data")  # refuses absolute paths, '..' and links out of work_dir
    if base_model is not None:
        rebase_adapter(work_dir, base_model, final_dir.parent)
    return install(work_dir, final_dir)


def rebase_adapter(folder: Path, base_model: str, models_dir: Path) -> str | None:
    """An uploaded LoRA adapter names its base as the node saw it: a hub id (loadable anywhere), or the path of a
    folder on the node: the tiny base in the node's scratch folder (deleted with it), or a local base. Make it name
    this host's copy instead: the tiny base of `models_dir` (built here when missing: the same inputs make the same
    files), or the request's local folder as this host resolves it (the request was checked against it before it
    was queued). Rewrites adapter_config.json, training.json's `base_model_source` and the card; returns the base
    now named (None: not an adapter, or a hub base, left as it is)."""
    import json

    from ..atomic import write_atomic
    from ..modelfolder import ADAPTER_FILE, TRAINING_FILE, is_adapter
    from .basemodel import base_kind
    from .card import write_card
    from .tiny import ensure_tiny_base

    kind = base_kind(base_model)
    if not is_adapter(folder) or kind not in ("tiny", "local"):
        return None
    folder_of_base = ensure_tiny_base(models_dir, base_model) if kind == "tiny" else Path(base_model).expanduser()
    base = str(folder_of_base.resolve())
    for name, key in ((ADAPTER_FILE, "base_model_name_or_path"), (TRAINING_FILE, "base_model_source")):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            data[key] = base
            write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if (folder / TRAINING_FILE).exists():
        write_card(folder)
    return base
