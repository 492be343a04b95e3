"""mimicbot: learn to write like a person from their posts, then post in that voice."""

__version__ = "0.1.0"
