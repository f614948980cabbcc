"""Subcommands of ``hwbench`` that live in modules of their own; each module has ``register(subparsers)``.

Handlers raise :class:`hwbench_pipeline.cli.UsageError` for bad input (one line on stderr, exit status 2).
"""
