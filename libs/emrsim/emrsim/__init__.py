"""Demo EMR simulator: a synthetic Mentor Mother programme posted through the public APIs."""
