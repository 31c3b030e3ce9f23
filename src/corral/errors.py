"""One error type for bad input, so every entry point reports file, line and field alike."""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from gzip import BadGzipFile


class InputError(ValueError):
    """Bad user input: names where it is (file, line, field) and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.message = message
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


@contextmanager
def reading(path: object) -> Iterator[None]:
    """Turn what the operating system, the text codecs and the decompressor say about a file
    that cannot be read as asked into an input error naming the file: every reader goes
    through here, so no file gives a traceback."""
    try:
        yield
    except IsADirectoryError:
        raise InputError("is a folder, not a file", source=str(path)) from None
    except FileNotFoundError:
        raise InputError("file not found", source=str(path)) from None
    except PermissionError:
        raise InputError("cannot be read (permission denied)", source=str(path)) from None
    except UnicodeError as err:
        raise InputError(f"not UTF-8 text ({err}); save it as UTF-8", source=str(path)) from None
    except (BadGzipFile, EOFError, zlib.error) as err:
        raise InputError(f"not readable gzip data ({err})", source=str(path)) from None
    except csv.Error as err:
        raise InputError(f"not a CSV table ({err})", source=str(path)) from None


def install_hint(extra: str) -> str:
    """How to add an extra, as the README installs corral (from its checkout), and from a
    package index."""
    return f"pip install -e '.[{extra}]' in corral's checkout, or pip install 'corral[{extra}]'"
