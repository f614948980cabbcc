"""Read-only REST API over the warehouse (``hwbench serve``); see app.create_app."""
