"""The `pate` command line: thin click commands over the :mod:`pate` library, one module per command."""
