"""The argument parser every fgnas command uses: a usage error is one line and exit 2, like every other bad input."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse prints its usage block and then the error; our commands promise one line that says what to do."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
