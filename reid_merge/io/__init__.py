"""Files and video at the edges: reading and writing frames, track files, atomic writes, drawing."""
