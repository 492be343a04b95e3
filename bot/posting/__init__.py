"""Posting: targets (networks a post can go to), guards, the outgoing-posts ledger, schedules and replies.

    base.py            the Target interface and the errors every target raises
    targets.py         target names (`x`, `discord:ID`, ...) and how each is built
    x.py               the X target (tweepy create_tweet, OAuth 1.0a); its caller is bot/networks/x.py's, with
                       the posting kinds of error (also used by the mentions poll)
    bluesky.py         the Bluesky target (one kept session per account)
    mastodon.py        the Mastodon target (visibility, content warning, Idempotency-Key)
    text.py            X's weighted length, fitting without cutting words, inert @handles
    guards.py          the checks every post passes before it is sent
    ledger.py          the outgoing table: intent before sending, remote id after, "unknown" never retried
    poster.py          one post: generate → guards → ledger → send (or a draft for approval)
    schedules.py       schedules in SQLite: validation, triggers, edits
    schedule_runner.py the daemon's apscheduler serving the schedules (misfire, coalescing: see its docstring)
    replies.py         answering X mentions, with loop guards
    daemon.py          what the daemon runs: runner + replies + the fire of a schedule

Every network's client and call wrapper (429 waits, errors) are in bot/networks/, shared with reading.
"""
