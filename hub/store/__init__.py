"""The deal store."""

from hub.store.engine import Store

__all__ = ["Store"]
