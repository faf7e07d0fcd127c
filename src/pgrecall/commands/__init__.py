"""The commands of the ``pgrecall`` CLI, one module per group."""
