"""One module per command: each reads only the previous stage's folder (see artextract.layout) and writes its own."""
