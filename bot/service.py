"""The service API: the one set of nouns and verbs that the CLI and the Discord cogs are thin faces of.

Accounts are fetched from sources into the store; models are trained from stored accounts by jobs in a
pool of child processes; generation serves cached models. Nothing here imports discord. The faces import
this module, bot.errors and bot.config, nothing behind them (tests/test_layers.py holds them to it): the
nouns they share — job states, the default prompt, the card's table rows, a stop request — are named here.
"""

from __future__ import annotations

import asyncio
import difflib
import fcntl
import json
import logging
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from urllib.parse import quote

from .cleaning import DEFAULT_PROMPT, MIN_CHARS, STATS_ROWS, clean_post
from .config import Settings, load_settings
from .errors import MimicbotError, NotEnoughData, UnknownAccount, UnknownModel, ValidationError
from .generation.prompts import MAX_PROMPT_CHARS, check_opener, check_prompt
from .naming import discord_member_handle, normalise_handle, parse_spec
from .sources import open_source
from .sources.base import FetchResult, Source
from .store import Store, utcnow
from .store.members import MemberMessage, Members
from .training import jobs as job_queue
from .training.jobs import ACTIVE, CANCELLED, FAILED, PROGRESS_KEYS, QUEUED, RUNNING, SUCCEEDED, TERMINAL
from .training.pool import TrainingPool, run_job_blocking
from .training.spec import TrainRequest, check_hyperparameters, check_request, model_id_for
from .training.supervisor import Stop, log_path_for

log = logging.getLogger(__name__)

MAX_ACCOUNTS = 3  # a cyborg is at most three people, as in the recipe
FORGET_WAIT_S = 60.0  # how long forget waits for a cancelled job to stop (a run stops within seconds)
FORGOTTEN = "[forgotten]"  # what the outgoing ledger keeps of a forgotten model's posts
@dataclass
class FetchReport:
    """One account's line of the card's table after a fetch (totals over everything stored)."""

    handle: str
    display_name: str
    source: str
    network: str
    downloaded: int
    retweets: int
    short: int
    kept: int
    chars: int
    new: int
    warning: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Mimicbot:
    """One instance per process. Owns the store; the pool and cache are attached by the training and
    generation layers when the process serves them."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None):
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.db_path)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Mimicbot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- fetching ---------------------------------------------------------------------------------

    def source(self, spec: str, handle: str | None = None) -> Source:
        return open_source(spec, self.settings, handle=handle)

    async def fetch(self, specs: list[str], handle: str | None = None) -> list[FetchReport]:
        """Fetch every source, then store each one atomically. A source that fails stores nothing;
        sources are all read before anything is written, so one bad source leaves the database unchanged."""
        started = utcnow()
        results = await self.read(specs, handle)
        return await asyncio.to_thread(lambda: [self.ingest(src.label, result, started) for src, result in results])

    async def read(self, specs: list[str], handle: str | None = None) -> list[tuple[Source, FetchResult]]:
        """Read every source, storing nothing (a known account's cursor is read from the store)."""
        sources = [self.source(s, handle) for s in specs]
        results = []
        for src in sources:
            since = None
            existing = None
            result: FetchResult | None = None
            # an account is known only after its first read; the X source needs since_id up front
            known = getattr(src, "handle", None)
            network = getattr(src, "network", None)
            if known and network:
                existing = await asyncio.to_thread(self.store.get_account, network, known)
                since = existing["since_id"] if existing else None
            result = await src.fetch(since_id=since)
            results.append((src, result))
        return results

    def ingest(self, label: str, result: FetchResult, started: str | None = None) -> FetchReport:
        """Clean and store one fetch result in one transaction; returns the account's totals."""
        cleaned = [(raw, clean_post(raw.text, raw.is_retweet)) for raw in result.posts]
        with self.store.transaction() as db:
            account = self.store.upsert_account(result.account, db=db)
            new = self.store.add_posts(account["id"], cleaned, db=db)
            self.store.set_cursor(account["id"], _newer(account["since_id"], result.cursor), db=db)
            stats = self.store.account_stats(account["id"])
            self.store.record_fetch(account["id"], label, started or utcnow(), stats, new, db=db)
        return FetchReport(
            handle=account["handle"], display_name=account["display_name"], source=label,
            network=account["network"], new=new, warning="; ".join(filter(None, (stats.warning, result.note))) or None,
            **stats.as_dict(),
        )

    def fetch_blocking(self, specs: list[str], handle: str | None = None) -> list[FetchReport]:
        return asyncio.run(self.fetch(specs, handle))

    # -- accounts ---------------------------------------------------------------------------------

    def accounts(self) -> list[dict]:
        return self.store.list_accounts()

    # -- training ---------------------------------------------------------------------------------
    # Jobs live in SQLite (bot/training/jobs.py); the daemon attaches a TrainingPool that runs them,
    # `mimicbot train` runs the one it queued with `run_job`.

    pool: TrainingPool | None = None

    async def build_request(self, sources: list[str], **hyper) -> TrainRequest:
        """The request for a model of up to three accounts. Each SOURCE names an account already stored
        (used as is) or is fetched first; nothing is stored unless every account has enough text
        (NotEnoughData otherwise). Hyperparameters left None take the recipe's defaults."""
        specs = list(dict.fromkeys(parse_spec(s).spec for s in sources if s.strip()))  # a bad one fails first
        if not specs:
            raise ValidationError("name at least one account or source to train on")
        if len(specs) > MAX_ACCOUNTS:
            raise ValidationError(f"a model learns from at most {MAX_ACCOUNTS} accounts; {len(specs)} were given")
        # everything is checked before anything is fetched or stored, the cheap checks first; the network is
        # awaited, every SQLite read and write runs in a thread, off the event loop
        hyper = self._hyperparameters(hyper)
        stored = await asyncio.to_thread(self._stored_accounts, specs)
        missing = [spec for spec, a in stored.items() if a is None]
        await asyncio.to_thread(self._check_fetchable, missing)
        await asyncio.to_thread(self._check_base_model, hyper)
        started = utcnow()
        results = await self.read(missing) if missing else []
        return await asyncio.to_thread(self._request, specs, stored, results, started, hyper)

    def check_train_options(self, **hyper) -> dict:
        """The hyperparameters of a training request, defaults filled in (None: the default), or a ValidationError
        for the first that cannot work: out of range, a base model that cannot be loaded here (no such folder, a
        hub model neither cached nor downloadable now), a block size beyond the base model's context. Checked
        before a job is queued or anything fetched, so a refused request leaves nothing behind."""
        hyper = self._hyperparameters(hyper)
        self._check_base_model(hyper)
        return hyper

    def _hyperparameters(self, given: dict) -> dict:
        """The hyperparameters with the defaults filled in, each in range (ValidationError otherwise)."""
        hyper = {"base_model": self.settings.mimicbot_base_model, **{k: v for k, v in given.items() if v is not None}}
        check_hyperparameters(TrainRequest(model_id="", accounts=[], models_dir="", **hyper))
        return hyper

    def _check_base_model(self, hyper: dict) -> None:
        """The base model can be loaded here (without a download, or the hub answers now) and the block size fits
        its context (bot/training/basemodel.py)."""
        from .training.basemodel import base_model_context

        if hyper.get("lora"):
            import importlib.util

            if importlib.util.find_spec("peft") is None:
                raise ValidationError("LoRA training needs peft, which is not installed: pip install 'mimicbot[lora]'")
        if hyper.get("qlora") and self.settings.mimicbot_executor == "local":
            self._check_qlora()  # on Ray the node trains, and its trainer checks its own GPU
        context = base_model_context(hyper["base_model"], self.settings.models_dir, self.settings.hf_endpoint)
        block_size = hyper.get("block_size")
        if context and block_size and block_size > context:
            raise ValidationError(f"block_size {block_size} is longer than the base model's context ({context} "
                                  f"tokens of {hyper['base_model']})")

    @staticmethod
    def _check_qlora() -> None:
        """A QLoRA job trains here: refused now, rather than in the training child, without a CUDA GPU or
        bitsandbytes (bot/training/qlora.py)."""
        import torch

        from .training import qlora

        try:
            qlora.check(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        except MimicbotError as e:
            raise ValidationError(str(e)) from None

    def _check_fetchable(self, specs: list[str]) -> None:
        """An X handle that names no stored account can only be fetched with X credentials: without them, a name
        close to a stored account's is a typo, and is said to be one (rather than that X credentials are missing)."""
        if self.settings.twitter_bearer_token is not None:
            return
        handles = None
        for spec in specs:
            try:
                parsed = parse_spec(spec)
            except ValidationError:
                continue  # reported, in the grammar's words, when the source is opened
            if parsed.path is not None or parsed.network != "x":
                continue
            if handles is None:
                handles = [r["handle"] for r in self.store.query("select distinct handle from accounts order by 1")]
            name = spec.strip().lstrip("@")
            close = difflib.get_close_matches(name.lower(), handles, n=3, cutoff=0.6)
            if close:
                raise UnknownAccount(f"no account {name!r}; did you mean {' or '.join(close)}? (no X credentials "
                                     f"are set to fetch @{name} from X: TWITTER_BEARER_TOKEN)")

    def _stored_accounts(self, specs: list[str]) -> dict[str, dict | None]:
        """Each SOURCE's stored account (None: it must be read); NotEnoughData if a stored one is short."""
        stored = {spec: self._stored_account(spec) for spec in specs}
        _require_enough(self.store, [a for a in stored.values() if a])
        return stored

    def _request(self, specs: list[str], stored: dict, results: list[tuple[Source, FetchResult]], started: str,
                 hyper: dict) -> TrainRequest:
        """Store what was read (in one transaction, kept only if each account has enough text), then the request."""
        fetched = {}
        if results:
            with self.store.transaction():
                reports = [self.ingest(src.label, result, started) for src, result in results]
                _require_enough(self.store, [self.store.get_account(r.network, r.handle) for r in reports])
            missing = [spec for spec in specs if stored[spec] is None]
            fetched = {spec: self.store.get_account(r.network, r.handle) for spec, r in zip(missing, reports)}
        accounts = list({a["id"]: a for a in (stored[s] or fetched[s] for s in specs)}.values())
        req = TrainRequest(
            model_id=model_id_for([a["handle"] for a in accounts]),
            accounts=[job_queue.account_data(self.store, a) for a in accounts],
            models_dir=str(self.settings.models_dir.resolve()),
            int8=self.settings.mimicbot_int8 != "off",
            **hyper,
        )
        check_request(req)
        return req

    def _stored_account(self, spec: str) -> dict | None:
        """The stored account a SOURCE names, if it names one without being read (a handle)."""
        parsed = parse_spec(spec)
        if parsed.network == "discord" and parsed.guild_id:
            return self._member_account(int(parsed.guild_id), int(parsed.account_id))
        if parsed.path is not None or parsed.network == "discord":
            return None  # a file is read again; a Discord user is refused when opened as a source
        if parsed.network in ("bsky", "mastodon"):
            return self.store.get_account(parsed.network, parsed.handle)
        found = self.store.find_accounts(parsed.handle)
        return found[0] if found else None

    def submit(self, req: TrainRequest, requested_by: str = "cli", guild_id: int | None = None,
               status_channel_id: int | None = None) -> dict:
        """Queue a training job; returns its row."""
        job = job_queue.enqueue(self.store, req, requested_by, guild_id, status_channel_id)
        if self.pool is not None:
            self.pool.notify()
        return job

    def run_job(self, job_id: int, on_event=None, stop: Stop | None = None) -> dict:
        """Run a queued job in this process (or follow it if another process took it); blocks until it
        ends and returns its final row. `stop.set("cancel")` cancels it."""
        return run_job_blocking(self.store, self.settings, job_id, on_event, stop)

    async def follow(self, job_id: int):
        """The job's events (progress, then state changes; the last one terminal) until it ends, whichever
        process runs it: an async iterator. UnknownJob for a bad id."""
        from .training.follow import follow

        async for event in follow(self.store, job_id):
            yield event

    def jobs(self, states: tuple[str, ...] | None = None, limit: int = 50, guild_id: int | None = None) -> list[dict]:
        """The newest jobs first, of these states and this Discord server when given."""
        return job_queue.list_jobs(self.store, states, limit, guild_id)

    def job(self, job_id: int) -> dict:
        """One job's row; UnknownJob for a bad id."""
        return job_queue.get(self.store, job_id)

    def cancel(self, job_id: int) -> dict:
        """Cancel a queued job now, or ask whichever process runs it to stop it (within about a second)."""
        return job_queue.request_cancel(self.store, job_id)

    async def acancel(self, job_id: int) -> dict:
        """`cancel`, and when this process's pool runs the job, return once it has stopped."""
        if self.pool is not None:
            return await self.pool.cancel(job_id)
        return await asyncio.to_thread(self.cancel, job_id)

    def job_log(self, job_id: int):
        """The path of the job's training log (written by its run)."""
        return log_path_for(self.settings.data_dir, job_id)

    def set_status_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember the Discord message that shows the job's progress (followed again after a restart)."""
        job_queue.set_status_message(self.store, job_id, channel_id, message_id)

    # -- models and generation ---------------------------------------------------------------------
    # Models are directories under models_dir (bot/generation/models.py); generation serves them from one
    # cache per process, created on first use. torch and transformers are imported only when needed.

    _cache = None
    _cache_lock = threading.Lock()

    @cached_property
    def model_store(self):
        from .generation.models import ModelStore

        return ModelStore(self.settings.models_dir, self.settings.mimicbot_generation_dtype, self._training_posts,
                          int8=self.settings.mimicbot_int8 != "off")

    def _training_posts(self, record: dict) -> list[str] | None:
        """A model's training posts as stored now (its training.json's accounts), None if one is not stored."""
        texts = []
        for account in record.get("accounts") or []:
            row = self.store.get_account(account.get("network") or "x", account.get("handle") or "")
            if row is None:
                return None
            texts += self.store.kept_texts(row["id"])
        return texts or None

    @property
    def cache(self):
        """The process's model cache (MIMICBOT_CACHE_MODELS models or bases, MIMICBOT_CACHE_ADAPTERS LoRA personas,
        MIMICBOT_CACHE_MB megabytes)."""
        with Mimicbot._cache_lock:
            if self._cache is None:
                from .generation.cache import ModelCache

                store = self.model_store
                self._cache = ModelCache(self.settings.mimicbot_cache_models, self.settings.mimicbot_cache_mb,
                                         loader=store.load, stamp=store.stamp,
                                         max_adapters=self.settings.mimicbot_cache_adapters)
            return self._cache

    def generate(self, model_id: str, prompt: str = DEFAULT_PROMPT, n: int = 5, temperature: float | None = None,
                 top_p: float | None = None, top_k: int | None = None, max_new_tokens: int | None = None,
                 seed: int | None = None, context: str | None = None):
        """Up to n new, whole posts in the model's voice (a GenerationResult), each starting with `prompt` ("" lets
        the model write the whole post); copies of training posts and posts that do not end within the budget
        are refused and resampled. `context`: a message the post answers (see README, "Replies"). Settings left
        None come from the model's generation_config.json; out-of-range ones are refused (ValidationError)
        before the model is loaded."""
        from .generation import check_settings, generate

        if prompt != "":  # "" is no opener: the model writes the whole post (schedules, replies)
            prompt = check_prompt(prompt)  # before the model is loaded: a refusal costs nothing
        check_settings(n, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                       seed=seed)
        return generate(self.cache.get(model_id), prompt, n, seed=seed, temperature=temperature, top_p=top_p,
                        top_k=top_k, max_new_tokens=max_new_tokens, context=context)

    async def areply(self, model_id: str, message: str, n: int = 1, **settings):
        """Up to n answers to `message` (a GenerationResult): the model reads the message (cleaned like a post, its
        opening @mentions dropped) before it writes each answer, from the start-of-post token (no opener)."""
        from .cleaning import context_text

        return await self.agenerate(model_id, "", n, context=context_text(message) or " ".join(message.split()),
                                    **settings)

    async def agenerate(self, model_id: str, prompt: str = DEFAULT_PROMPT, n: int = 5, **settings):
        """`generate` in a worker thread, so the event loop keeps serving while the model samples."""
        return await asyncio.to_thread(self.generate, model_id, prompt, n, **settings)

    def models(self) -> list[dict]:
        """Every trained model: id, display name, accounts, created_at, size_mb, perplexity_after."""
        return self.model_store.list()

    def stray_model_folders(self) -> list[str]:
        """Folders in the models directory that hold a model under a name that is not a model id (never listed)."""
        return self.model_store.strays()

    def model_ids(self) -> list[str]:
        """The ids of every trained model (cheap: no file is read)."""
        return self.model_store.ids()

    def model(self, model_id: str) -> dict:
        """One model: its summary, training.json and the paths of its files; UnknownModel for a bad id."""
        return self.model_store.show(model_id)

    def write_card(self, model_id: str):
        """Rewrite the model's card (README.md) from its training.json; returns its path."""
        from .training.card import write_card

        return write_card(self.model(model_id)["path"])

    def push_model(self, model_id: str, repo: str, private: bool = False):
        """Upload a model, its card and pictures to the Hugging Face hub (HF_TOKEN); a PushResult."""
        from .hub import push_model

        return push_model(self.settings, model_id, repo, private=private)

    def remove_model(self, model_id: str) -> list[dict]:
        """Delete a model from disk (atomically) and from the cache, and its schedules, which could only fail from
        now on; returns the schedules removed."""
        self.model_store.remove(model_id)
        if self._cache is not None:
            self._cache.evict(model_id)
        return self.schedules.remove_for_model(model_id)

    # -- posting --------------------------------------------------------------------------------
    # Schedules, the outgoing ledger, guards and targets live in bot/posting (no discord import there until a
    # Discord target is built); the daemon runs schedules and X replies with bot.posting.daemon.PostingDaemon.

    @cached_property
    def schedules(self):
        from .posting.schedules import Schedules

        return Schedules(self.store, self.settings)

    @cached_property
    def poster(self):
        from .posting.poster import Poster

        return Poster(self.store, self.settings, self._post_candidates, self._copy_check)

    async def _post_candidates(self, model_id: str, n: int, prompt: str = "", context: str | None = None) -> list[str]:
        """Candidates for an autonomous post or a reply: from the start-of-post token alone unless an opener is set."""
        return list((await self.agenerate(model_id, prompt, n, context=context)).texts)

    def _copy_check(self, model_id: str):
        index = self.cache.get(model_id).anticopy
        return index.check if index is not None else None

    def add_schedule(self, model_id: str, target: str, *, cron: str | None = None, every: str | None = None,
                     timezone: str | None = None, require_approval: bool = False,
                     approval_channel_id: int | None = None, prompt: str | None = None) -> dict:
        """Store a schedule (UnknownModel, ValidationError for a bad cron, interval, zone, target or prompt).
        `prompt`: a fixed opener for its posts (None: the model writes each post whole)."""
        self.model(model_id)
        return self._shown(self.schedules.add(model_id, target, cron=cron, every=every, timezone=timezone,
                                              require_approval=require_approval,
                                              approval_channel_id=approval_channel_id, prompt=prompt))

    def list_schedules(self) -> list[dict]:
        """Every schedule, with `next_fire` (ISO, None while paused), a readable `when` and `missing_credentials`."""
        return [self._shown(row) for row in self.schedules.list()]

    def _shown(self, schedule: dict) -> dict:
        """A schedule as the faces show it: `_timed`, and `missing_credentials`, the settings its target's network
        still lacks here (a firing fails until they are set; empty when configured)."""
        network = schedule["target"].partition(":")[0]
        return {**_timed(schedule), "missing_credentials": self.settings.missing_credentials(network)}

    def remove_schedule(self, schedule_id: int) -> dict:
        return _timed(self.schedules.remove(schedule_id))

    def pause_schedule(self, schedule_id: int) -> dict:
        return _timed(self.schedules.pause(schedule_id))

    def resume_schedule(self, schedule_id: int) -> dict:
        return _timed(self.schedules.resume(schedule_id))

    def run_schedule_now(self, schedule_id: int) -> dict:
        """Ask the running daemon to fire the schedule once, now."""
        return self.schedules.request_run(schedule_id)

    async def post(self, model_id: str, to: str, *, dry_run: bool = False, prompt: str | None = None,
                   discord_client=None, content_warning: str | None = None):
        """Generate, guard and send one post to `to` (`x`, `discord:CHANNEL_ID`, `bsky`, `mastodon`); a PostOutcome.
        The post starts from the start-of-post token alone unless `prompt` sets an opener. Discord goes through
        `discord_client` when given (the daemon), else over REST with DISCORD_TOKEN (the CLI). `content_warning`:
        Mastodon's `spoiler_text` for this post (else MIMICBOT_MASTODON_CW). Missing credentials are refused
        (AuthError) before anything is generated or recorded; a dry run needs none."""
        from .posting.targets import build_target

        target = build_target(to, self.settings, discord_client=discord_client, content_warning=content_warning,
                              dry_run=dry_run)
        prompt = check_opener(prompt) or ""
        await asyncio.to_thread(self.model, model_id)
        return await self.poster.post(model_id, target, dry_run=dry_run, prompt=prompt)

    def outgoing(self, status: str | None = None, limit: int = 50) -> list[dict]:
        """The outgoing ledger, newest first (status: draft, rejected, sending, sent, failed, unknown)."""
        return self.poster.ledger.list(status, limit)

    def resolve_outgoing(self, entry_id: int, remote_id: str | None) -> dict:
        """Settle an "unknown" post by hand: found on the network (its id) or not posted (None)."""
        return self.poster.ledger.resolve(entry_id, remote_id)

    async def approve_draft(self, entry_id: int, decided_by: str, discord_client=None):
        """Send a draft a human approved (guards run again first); a PostOutcome."""
        from .posting.targets import build_target

        entry = await asyncio.to_thread(self.poster.ledger.get, entry_id)
        target = build_target(entry["target"], self.settings, discord_client=discord_client)
        return await self.poster.approve(entry_id, target, decided_by)

    def reject_draft(self, entry_id: int, decided_by: str):
        return self.poster.reject(entry_id, decided_by)

    # -- discord-facing ---------------------------------------------------------------------------
    # Per-server settings are plain JSON values under a key; their names, types and defaults belong to
    # the Discord face (bot/discord/guild_config.py), the core only stores them.

    def guild_settings(self, guild_id: int) -> dict:
        """Every stored setting of one server, decoded; keys never set are absent."""
        rows = self.store.query("select key, value from guild_settings where guild_id = ?", [guild_id])
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def set_guild_setting(self, guild_id: int, key: str, value) -> None:
        """Store one setting (None removes it, so the default applies again)."""
        with self.store.transaction() as db:
            if value is None:
                db.execute("delete from guild_settings where guild_id = ? and key = ?", [guild_id, key])
            else:
                db["guild_settings"].upsert(
                    {"guild_id": guild_id, "key": key, "value": json.dumps(value), "updated_at": utcnow()},
                    pk=("guild_id", "key"),
                )

    # -- Discord members' voices ----------------------------------------------------------------------
    # A member agrees (per server, with the time and the words) that their messages in the channels an admin
    # enabled may be learned; the Discord face reads those messages and hands them here by id and text. Nothing
    # is stored for a member without a consent row (checked in the same transaction as each write).

    @cached_property
    def members(self) -> Members:
        return Members(self.store)

    def member(self, guild_id: int, user_id: int) -> dict | None:
        """A member's consent row (handle, display_name, consented_at, avatar_url), or None."""
        return self.members.get(guild_id, user_id)

    def member_by_handle(self, handle: str) -> dict | None:
        """The consenting member (guild_id, user_id, ...) whose messages an account of this handle holds, or None."""
        return self.members.by_handle(normalise_handle(handle))

    def consenting_members(self, guild_id: int | None = None) -> list[dict]:
        """Every member who agreed, in one server or in all."""
        return self.members.consenting(guild_id)

    def opt_in(self, guild_id: int, user_id: int, display_name: str, consent_text: str) -> dict:
        """Record a member's consent in a server (the words they agreed to, the time) and create their account."""
        handle = discord_member_handle(display_name, guild_id, user_id)
        existing = self.store.get_account("discord", handle)
        if existing is not None and self.members.by_handle(handle) is None:  # a stale account of that handle
            self.store.delete_account(existing["id"])
        return self.members.agree(guild_id, user_id, handle, display_name, consent_text)

    def set_member_avatar(self, guild_id: int, user_id: int, avatar_url: str | None) -> dict:
        """The member agreed (a URL) or no longer agrees (None) that their avatar shows on their model's card."""
        row = self.members.set_avatar(guild_id, user_id, avatar_url)
        if row is None:
            raise UnknownAccount("you have not opted in to learning in this server (/optin)")
        return row

    def set_member_name(self, guild_id: int, user_id: int, display_name: str) -> None:
        self.members.set_display_name(guild_id, user_id, display_name)

    def opt_out(self, guild_id: int, user_id: int, wait_s: float = FORGET_WAIT_S) -> dict:
        """Stop learning a member in a server and forget it all: their consent and cursors first (nothing more of
        theirs is stored from then on), then, through `forget`, their stored messages, every model trained on them
        (cyborgs too), their jobs (queued and running ones cancelled) and those models' posted texts.
        UnknownAccount when they had not opted in."""
        handle = self.members.revoke(guild_id, user_id)
        if handle is None:
            raise UnknownAccount("you have not opted in to learning in this server")
        try:
            return self.forget(handle, wait_s=wait_s)
        except UnknownAccount:  # nothing was stored yet
            return {"handle": handle, "accounts": 0, "models": [], "posts": 0, "cancelled_jobs": [], "jobs": [],
                    "outgoing_scrubbed": 0, "wandb_runs": []}

    def learn_message(self, guild_id: int, user_id: int, message_id: int, channel_id: int, text: str,
                      created_at: str | None = None) -> int:
        """Store one message of a consenting member (1), or nothing (0: no consent, already stored)."""
        return self.members.learn(guild_id, user_id, [MemberMessage(message_id, channel_id, text, created_at)])

    def learn_messages(self, guild_id: int, user_id: int, messages: list[MemberMessage],
                       cursor: tuple[int, str | None, bool, int] | None = None) -> int:
        """Store a page of a member's past messages and the channel's backfill cursor `(channel_id, before_id, done,
        scanned)` in one transaction (nothing without consent); returns how many were new."""
        return self.members.learn(guild_id, user_id, messages, cursor)

    def edit_message(self, message_id: int, text: str) -> bool:
        """An edit on Discord: the stored text is replaced (False: the message is not stored)."""
        return self.members.edit(message_id, text)

    def forget_messages(self, message_ids: list[int]) -> int:
        """Deletions on Discord (one or a bulk): the stored messages go; returns how many were stored."""
        return self.members.delete(message_ids)

    def backfill_cursor(self, guild_id: int, user_id: int, channel_id: int) -> dict | None:
        """Where reading a member's past messages in a channel stands (before_id, done, scanned, learned), or None."""
        return self.members.cursor(guild_id, user_id, channel_id)

    def member_progress(self, guild_id: int, user_id: int) -> dict | None:
        """A consenting member's state: consent, the backfill per channel, the card's table and the characters
        still needed to train; None when they have not opted in."""
        row = self.members.get(guild_id, user_id)
        if row is None:
            return None
        account = self.store.get_account("discord", row["handle"])
        stats = self.store.account_stats(account["id"]) if account else None
        return {**row, "channels": self.members.cursors(guild_id, user_id),
                "stats": stats.as_dict() if stats else None,
                "chars_needed": max(0, MIN_CHARS - (stats.chars if stats else 0)),
                "stored": stats.downloaded if stats else 0}

    def member_spec(self, guild_id: int, user_id: int) -> str:
        """The SOURCE that names a member's messages in a server (for `build_request`)."""
        return f"discord:{guild_id}/{user_id}"

    def member_model_id(self, guild_id: int, user_id: int) -> str:
        """The id of the model of one member alone (their handle); UnknownModel when they have not opted in."""
        row = self.members.get(guild_id, user_id)
        if row is None:
            raise UnknownModel("no model of that member: they have not opted in to learning in this server (/optin)")
        return row["handle"]

    def model_servers(self, model_id: str) -> set[int]:
        """The Discord servers whose members' voices a model holds (empty: it holds none, it may be used anywhere).
        A member agreed to a model of their voice in their server, so the Discord face uses such a model only there."""
        accounts = (self.model(model_id).get("training") or {}).get("accounts") or []
        servers = set()
        for account in accounts:
            if isinstance(account, dict) and account.get("network") == "discord":
                member = self.members.by_handle(account.get("handle") or "")
                servers.add(member["guild_id"] if member else -1)  # -1: a member no longer learned: nowhere
        return servers

    def _member_account(self, guild_id: int, user_id: int) -> dict:
        row = self.members.get(guild_id, user_id)
        account = self.store.get_account("discord", row["handle"]) if row else None
        if account is None:
            raise UnknownAccount("that member has not opted in to learning in this server (/optin)")
        return account

    def forget(self, handle: str, dry_run: bool = False, wait_s: float = FORGET_WAIT_S) -> dict:
        """Delete everything stored about an account, on every network: its posts, every model trained on them,
        its training jobs (their stored requests name it), the texts those models posted (the ledger keeps
        that a post went out, not what it said) and the W&B runs under <data dir>/wandb that hold its posts.

        One forget of a handle at a time (a lock file, across processes). Its queued and running jobs are
        cancelled first and waited for — a job in its save phase could otherwise publish a model after
        forget returned. `dry_run`: only report what would go. UnknownAccount when nothing is stored."""
        handle = normalise_handle(handle)
        with _account_lock(self.settings.data_dir, handle):
            report = self._forget_plan(handle)
            if dry_run:
                return report
            for job_id in report["cancelled_jobs"]:
                self.cancel(job_id)
            for job_id in report["cancelled_jobs"]:
                _wait_until_ended(self.store, job_id, wait_s)
            report = {**self._forget_plan(handle, required=False), "cancelled_jobs": report["cancelled_jobs"]}
            for model_id in report["models"]:
                self.remove_model(model_id)
            with self.store.transaction() as db:
                for account in self.store.find_accounts(handle):
                    self.store.delete_account(account["id"])
                self.members.revoke_handle(handle, db)  # a Discord member forgotten is no longer learned
                db.execute(f"delete from jobs where id in ({', '.join('?' * len(report['jobs']))})", report["jobs"])
                if report["models"]:
                    marks = ", ".join("?" * len(report["models"]))
                    report["outgoing_scrubbed"] = db.execute(
                        f"update outgoing set text = ? where model_id in ({marks}) and text != ?",
                        [FORGOTTEN, *report["models"], FORGOTTEN]).rowcount
            for run in report["wandb_runs"]:
                shutil.rmtree(run, ignore_errors=True)
        return report

    def _forget_plan(self, handle: str, required: bool = True) -> dict:
        accounts = self.store.find_accounts(handle)
        models = [m["id"] for m in self.models() if handle in (m.get("accounts") or [])]
        jobs = [j for j in job_queue.list_jobs(self.store, None, 1_000_000)
                if handle in {a.get("handle") for a in (j.get("request") or {}).get("accounts", [])}]
        if required and not accounts and not models:
            raise UnknownAccount(f"nothing is stored for @{handle}")
        return {"handle": handle, "accounts": len(accounts), "models": models,
                "posts": sum(self.store.account_stats(a["id"]).downloaded for a in accounts),
                "cancelled_jobs": [j["id"] for j in jobs if j["state"] in ACTIVE],
                "jobs": [j["id"] for j in jobs], "outgoing_scrubbed": 0,
                "wandb_runs": [str(p) for p in _wandb_runs_naming(self.settings.data_dir, [handle, *models])]}

@contextmanager
def _account_lock(data_dir, handle: str):
    """One forget of a handle at a time, across processes (an flock on <data dir>/locks/<handle>.lock, the handle
    percent-encoded: whatever was typed, the file stays in that folder)."""
    locks = data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{quote(handle, safe='@')[:200]}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait_until_ended(store: Store, job_id: int, wait_s: float) -> None:
    """Until the job is in a terminal state (whichever process runs it); ValidationError after wait_s."""
    deadline = time.monotonic() + wait_s
    while job_queue.get(store, job_id)["state"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise ValidationError(f"training job {job_id} did not stop within {wait_s:g} s; nothing was deleted "
                                  "— try again once it has ended")
        time.sleep(0.2)


def _wandb_runs_naming(data_dir, names: list[str]) -> list:
    """W&B run folders under <data dir>/wandb whose files name any of `names` (the handle, its models)."""
    root = data_dir / "wandb"
    if not root.is_dir():
        return []
    needles = [n.encode() for n in names if n]
    found = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and "run-" in p.name):
        if any(needle in f.read_bytes() for f in run.rglob("*") if f.is_file() for needle in needles):
            found.append(run)
    return found


def _timed(schedule: dict) -> dict:
    """A schedule's row with `next_fire` (ISO, None while paused) and a readable `when`."""
    from .posting.schedules import describe, next_fire

    upcoming = next_fire(schedule)
    return {**schedule, "next_fire": upcoming.isoformat() if upcoming else None, "when": describe(schedule)}


def _require_enough(store: Store, accounts: list[dict]) -> None:
    """NotEnoughData, with the recipe's message, naming each account under the minimum."""
    short = [(a, stats) for a in accounts if not (stats := store.account_stats(a["id"])).enough]
    if short:
        raise NotEnoughData("; ".join(_shortfall(a, stats) for a, stats in short))


def _shortfall(account: dict, stats) -> str:
    """Why an account cannot train yet: the recipe's message; for a Discord member, by their display name (never
    an id), with the characters still needed."""
    if account["network"] != "discord":
        return f"@{account['handle']}: {stats.warning}"
    return (f"{account['display_name'] or 'this member'}: not enough messages yet: {stats.chars:,} characters kept, "
            f"{MIN_CHARS:,} needed — {MIN_CHARS - stats.chars:,} more characters to go")


def _newer(old: str | None, new: str | None) -> str | None:
    """The larger of two post ids (numeric ids compare as numbers)."""
    if not old or not new:
        return new or old
    if old.isdigit() and new.isdigit():
        return new if int(new) > int(old) else old
    return new


__all__ = ["ACTIVE", "CANCELLED", "DEFAULT_PROMPT", "FAILED", "FetchReport", "MAX_ACCOUNTS", "MAX_PROMPT_CHARS",
           "MIN_CHARS", "MemberMessage",
           "Mimicbot", "MimicbotError", "PROGRESS_KEYS", "QUEUED", "RUNNING", "STATS_ROWS", "SUCCEEDED", "Stop",
           "TERMINAL", "check_prompt"]
