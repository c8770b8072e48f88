"""``python -m reid_merge`` is the ``reid-merge`` command."""

from reid_merge.cli.main import main

# Guarded: worker processes of `batch` (spawned) import this module again as "__mp_main__".
if __name__ == "__main__":
    main()
