"""The command line: ``ordersaga COMMAND ...``.

:mod:`~ordersaga.cli.args` holds what every command group shares (argument types, exit statuses,
the usage error); each group registers its subcommands and their handlers in a module of its own
(:mod:`~ordersaga.cli.local`, :mod:`~ordersaga.cli.serve`, :mod:`~ordersaga.cli.worker`,
:mod:`~ordersaga.cli.up`, :mod:`~ordersaga.cli.proving`...), and
:mod:`~ordersaga.cli.main` builds the parser and calls the handler the parsed arguments name.
"""

from ordersaga.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
