"""``python -m deploylens``: the command line, where the ``deploylens`` script is not installed."""

from deploylens.cli import main

main()
