#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")
    from django.core.management import execute_from_command_line
    from django.db.utils import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as error:
        # An error that PostgreSQL reported (a deadlock, a cancelled statement) has an
        # SQLSTATE and keeps its traceback. One without an SQLSTATE comes from the client:
        # the server could not be reached or the connection was lost.
        if getattr(error.__cause__, "sqlstate", "") is not None:
            raise
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        sys.stderr.write(
            f"Error: the database is unreachable ({reason}). Check DATABASE_URL and that the "
            "PostgreSQL server is running, then run the command again.\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
