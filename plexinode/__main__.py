"""`python -m plexinode` runs the CLI."""

from plexinode.cli.main import main

if __name__ == "__main__":
    main()
