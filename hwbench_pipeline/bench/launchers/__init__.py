"""Launchers: how a configuration reaches a fresh process (forked here, a Ray task, a Ray Train job)."""
