"""Built-in channel and notifier plugins, registered through the `crm_hub` entry points."""
