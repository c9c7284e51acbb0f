"""Self-contained experiments that write their results like any run (JSON, PNG, a Markdown summary)."""
