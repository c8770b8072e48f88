"""Models and their weights: the registry, downloads, checkpoint loading, embedders, detector and tracker."""
