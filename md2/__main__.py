"""``python -m md2`` (and ``torchrun -m md2 train ...``) run the md2 command."""

from md2.cli.app import main

main()
