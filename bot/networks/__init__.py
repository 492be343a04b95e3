"""One client and one call wrapper per network, shared by reading (bot/sources) and posting (bot/posting).

- base.py: the rate-limit wait (from the answer's reset headers, with a cap) and the call loop every network's
  caller runs: awaited or in a worker thread, never a blocking sleep on the event loop; errors redacted.
- x.py, bluesky.py, mastodon.py: each network's client factory (on its configurable base URL) and caller, which
  maps that client library's exceptions onto bot/errors.py (and the posting kinds it is given).
"""
