"""The evaluation report: figures (PNG), a self-contained report.html and report.md."""
