"""A local HTTP emulator of Anthropic's Message Batches API (plus `POST /v1/messages` and the Models API).

Used by the tests, the benchmarks and `tegbatchd demo`: the real `anthropic` SDK pointed at it
(`base_url=` or `ANTHROPIC_BASE_URL`) cannot tell it from the real service. It never talks to the
network beyond the socket it listens on. Start it with `tegbatchd emulator` (see `cli.py`).
"""
