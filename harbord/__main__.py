"""``python -m harbord`` = the ``harbord`` command."""

from harbord.cli import main

main()
