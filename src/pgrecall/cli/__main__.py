"""``python -m pgrecall.cli``: the same command as the ``pgrecall`` script."""

from pgrecall.cli import main

main()
