#!/usr/bin/env python
"""Django's command-line utility."""

import os
import re
import sys

# Connection failures (psycopg's, its pool's, SQLite's): a command then says so in one line.
_CONNECTING = re.compile(r"connect|connection|unable to open database", re.IGNORECASE)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)
    except (OperationalError, InterfaceError) as exc:
        text = str(exc).strip()
        if "--traceback" in sys.argv or not _CONNECTING.search(text):
            raise
        sys.stderr.write(f"database unreachable: {text.splitlines()[0]}\n")  # one line, not a traceback
        sys.exit(1)


if __name__ == "__main__":
    main()
