"""ser: the library behind the pipeline's scripts (speech emotion recognition)."""
