"""Deployment files: docker-compose.yml and its GPU override validate against the Compose Specification's JSON
schema and say what a server owner needs; the Dockerfile and .dockerignore keep secrets and stores out of the
image and install the CPU torch first; .env.example loads as compose passes it.

No Docker engine runs here. The schema is the Compose Specification's own (compose-spec/compose-spec,
schema/compose-spec.json), as vendored by the check-jsonschema package (`--builtin-schema vendor.compose-spec`).
When Debian's docker-compose is installed (.ci/run installs it), Compose itself also loads and merges the files.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from bot.config import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test dependency")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE, GPU = ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"


@pytest.fixture(scope="module")
def validator():
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def errors(validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_files_follow_the_compose_specification(validator):
    assert errors(validator, load(COMPOSE)) == []
    assert errors(validator, load(GPU)) == []


def test_the_schema_catches_mistakes(validator):
    """The check can fail: a misspelt key and a GPU capability that is not a list are refused."""
    doc = load(COMPOSE)
    doc["services"]["bot"]["volume"] = ["./data:/app/data"]
    assert any("volume" in e for e in errors(validator, doc))
    gpu = copy.deepcopy(load(GPU))
    gpu["services"]["bot"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] = "gpu"
    assert errors(validator, gpu)


def test_the_bot_service_is_what_a_server_owner_needs():
    bot = load(COMPOSE)["services"]["bot"]
    assert bot["command"][0] == "mimicbot" and bot["command"][-1] == "run"
    assert bot["env_file"] == ".env"
    assert bot["restart"] == "unless-stopped"
    assert bot["healthcheck"]["test"] == ["CMD", "mimicbot", "health"]
    # data/ and models/ are volumes, mounted where the container's settings point
    mounts = dict(v.split(":")[:2] for v in bot["volumes"])
    assert mounts == {"./data": bot["environment"]["MIMICBOT_DATA_DIR"],
                      "./models": bot["environment"]["MIMICBOT_MODELS_DIR"]}
    # the base file reserves no GPU, so it starts on any host
    assert "deploy" not in bot


def test_the_gpu_override_reserves_nvidia_gpus_and_the_cuda_torch():
    bot = load(GPU)["services"]["bot"]
    (device,) = bot["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert bot["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert bot["image"] != load(COMPOSE)["services"]["bot"]["image"]  # the CPU and GPU images never mix


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_image_installs_cpu_torch_first_and_runs_the_daemon():
    steps = dockerfile_instructions()
    runs = [args for op, args in steps if op == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch==" in r)
    project_at = next(i for i, r in enumerate(runs) if "pip install ." in r or 'pip install ".[' in r)
    assert torch_at < project_at
    assert "--index-url" in runs[torch_at]
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCH_VERSION"] == "2.13.0"
    compose = load(COMPOSE)["services"]["bot"]
    assert json.loads(dict(steps)["CMD"])[0] == "mimicbot" and json.loads(dict(steps)["CMD"])[-1] == "run"
    assert '"mimicbot", "health"' in dict(steps)["HEALTHCHECK"]
    assert compose["healthcheck"]["test"][1:] == ["mimicbot", "health"]
    assert any(op == "USER" for op, _ in steps)  # not root


def test_secrets_and_stores_never_enter_the_build_context():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for pattern in (".env", "data/", "models/", ".venv/", ".git/", "wandb/"):
        assert pattern in ignored
    # what the Dockerfile copies exists and is not ignored
    copies = [args.split()[:-1] for op, args in dockerfile_instructions() if op == "COPY"]
    for source in (s for srcs in copies for s in srcs):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
        assert source not in ignored and source + "/" not in ignored


def test_env_example_loads_as_compose_passes_it(monkeypatch):
    """compose's env_file passes every line of .env, empty values included, as environment variables."""
    example = ROOT / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not written yet")
    for line in example.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            monkeypatch.setenv(key.strip(), value)
    monkeypatch.setenv("MIMICBOT_DATA_DIR", "/app/data")  # as compose's `environment:` overrides it
    settings = Settings(_env_file=None)
    assert settings.data_dir == Path("/app/data")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed "
                    "(.ci/run installs it)")
def test_docker_compose_loads_and_merges_the_files(tmp_path):
    for f in (COMPOSE, GPU):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / ".env").write_text("DISCORD_TOKEN=\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "MIMICBOT_"))}
    res = subprocess.run(["docker-compose", "-f", COMPOSE.name, "-f", GPU.name, "config"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    bot = yaml.safe_load(res.stdout)["services"]["bot"]
    assert bot["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert bot["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert bot["build"]["args"]["EXTRAS"] == "hub,wandb,int8"  # the base file's build args survive the merge
    assert len(bot["volumes"]) == 2 and bot["restart"] == "unless-stopped"
