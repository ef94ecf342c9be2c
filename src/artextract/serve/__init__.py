"""`artextract serve`: browse an evaluated collection, find similar paintings and classify a new one, locally."""
