"""``python -m voxpipe`` is the ``voxpipe`` command."""

from .cli import main

main()
