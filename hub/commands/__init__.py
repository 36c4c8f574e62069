"""The ``hub`` command's groups, one module each; :mod:`hub.cli` assembles them."""
