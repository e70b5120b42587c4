"""``StrictParser``: argparse without abbreviations, whose usage errors are one line with the closest flag suggested.

Plain argparse runs ``--headles`` silently as ``--headless`` (a prefix) and answers ``--hedless`` with the whole
usage text; here both are one line, ``edge-app: error: unknown flag --hedless (did you mean --headless?) ...``,
and exit code 2 (``ExitCode.USAGE``). Both console-script families (``edge-app`` and the converter's) use it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, NoReturn

USAGE_EXIT = 2  # ExitCode.USAGE; argparse's own code for usage errors


class StrictParser(argparse.ArgumentParser):
    """No prefix matching of long flags; errors are one line naming the closest known flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def flags(self) -> list[str]:
        return sorted({s for action in self._actions for s in action.option_strings if s.startswith("--")})

    def closest(self, word: str) -> str | None:
        name = word.split("=", 1)[0]
        if not name.startswith("-"):
            return None
        match = difflib.get_close_matches(name, self.flags(), n=1, cutoff=0.6)
        return match[0] if match else None

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            unknown = [w for w in extras if w.startswith("-")] or extras
            word = unknown[0]
            guess = self.closest(word)
            if word.startswith("-"):
                hint = f" (did you mean {guess}?)" if guess else ""
                self.error(f"unknown flag {word}{hint}")
            self.error(f"unexpected argument {word!r}")
        return parsed

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; {self.prog} --help lists the flags", file=sys.stderr)
        sys.exit(USAGE_EXIT)
