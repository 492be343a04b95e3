"""Errors that reach a person. Each carries a one-line message fit for a CLI or a Discord reply."""

from __future__ import annotations


class MimicbotError(Exception):
    """Base of every error mimicbot reports to a person (CLI exit code 2, friendly Discord reply)."""

    exit_code = 2


class SourceError(MimicbotError):
    """A post source could not be read: bad path, malformed archive, network failure."""


class MalformedImport(SourceError):
    """A file or archive given to import is damaged, too big, unsafe or not the expected shape. Nothing of it
    was stored."""


class UnknownAccount(SourceError):
    """The account does not exist on that network."""


class ProtectedAccount(SourceError):
    """The account is protected/private or suspended: its posts cannot be read."""


class AuthError(SourceError):
    """A token is missing or was refused."""


class NotEnoughData(MimicbotError):
    """Too little kept text to train on."""


class UnknownModel(MimicbotError):
    """No model with that id."""


class UnknownJob(MimicbotError):
    """No training job with that id."""


class ConfigError(MimicbotError):
    """A setting is missing or invalid."""


class ValidationError(MimicbotError):
    """An argument is out of range or malformed (bad cron string, bad handle, ...)."""


class UnknownOutgoing(MimicbotError):
    """No outgoing post (draft or ledger entry) with that id, or it is not in a state that allows the action."""


class StoreBusy(MimicbotError):
    """Another process held the database's write lock for longer than the busy timeout."""
