"""Access control: API keys with scopes, per-key rate limits, hot rotation of the keys file.

- ``scopes``: the scope of every route (:func:`~serving.access.scopes.route_scope`).
- ``keys``: the keys file (TOML ``[[keys]]`` tables) parsed and checked as a whole.
- ``limits``: a token bucket per key and per worker.
- ``guard``: the decision for one request from (scope, raw Authorization value).
- ``reloader``: re-reads the keys file and swaps a changed, valid table in.
- ``setup``: all of it from the settings, for the app's wiring.

Transport-agnostic: nothing here knows HTTP framing, Litestar or gRPC. The request path calls
the guard once per request at its header pass (docs/security.md).
"""
