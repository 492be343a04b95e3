"""Posting: targets (networks a post can go to), guards, the outgoing-posts ledger, schedules and replies."""
