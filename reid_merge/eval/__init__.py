"""Scoring tracks against ground truth, as TrackEval scores MOTChallenge."""
