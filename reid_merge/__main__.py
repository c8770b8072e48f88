"""``python -m reid_merge`` is the ``reid-merge`` command."""

from reid_merge.cli import main

main()
