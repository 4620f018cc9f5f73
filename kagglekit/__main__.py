"""``python -m kagglekit`` — the same entry point as the console script."""

from kagglekit.cli import main

if __name__ == "__main__":
    main()
