"""crm-hub: an open integration hub between a sales team's lead channels and its deal store."""

__version__ = "0.1.0"
