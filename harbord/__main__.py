"""``python -m harbord`` = the ``harbord`` command."""

from harbord.cli import main

if __name__ == "__main__":
    main()
