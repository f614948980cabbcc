"""The WebSocket server that streams a model's greedy generation token by token (``hwbench serve-generate``), and the
HTTP admission rules it shares with the read-only REST API. It is part of what the generation scenario measures
(bench/streaming.py), so it lives in the engine; docs/streaming.md describes the protocol."""
