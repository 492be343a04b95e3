# The two commands a newcomer needs:  make run   and   make test
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install clean demo bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# CPU torch first: a bare 'torch' requirement would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	# the optional extras too, so that their tests (int8, Ray, W&B, hub push, LoRA) run rather than skip
	$(PIP) install --quiet -e '.[test,int8,ray,wandb,hub,lora]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Runs the daemon once DISCORD_TOKEN is configured; until then the offline demo.
run: $(STAMP)
	$(VENV)/bin/mimicbot start

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/mimicbot demo

bench: $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
