"""``python -m ffnops`` is the ``ffnops`` command."""

from ffnops.cli import main

if __name__ == "__main__":
    main()
