"""The rules engine and built-in policies: assignment, matching, hygiene."""
