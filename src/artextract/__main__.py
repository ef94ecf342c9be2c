"""`python -m artextract` is the same as the `artextract` command."""

from artextract.cli import main

main()
