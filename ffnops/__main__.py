"""``python -m ffnops`` is the ``ffnops`` command."""

from ffnops.cli import main

main()
