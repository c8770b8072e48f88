"""reid-merge: repair fragmented person tracks in videos."""

__version__ = "0.1.0"
