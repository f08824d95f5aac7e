"""The simulated phone's /system/bin/sh: enough of the POSIX shell language that a command reaching the phone means
what it would mean on a real one, so an injection the host lets through shows up in the tests.

Quoting ('...', "...", backslash), the list operators `;` `&&` `||` `&` and newlines, pipelines `|`, redirections
(`>`, `>>`, `<`, `N>&M`), command substitution `$(...)` and backticks (also inside double quotes, as sh does), `$?`
and `$NAME`, field splitting of unquoted expansions, and globbing of unquoted `*`, `?` and `[`. Subshells, functions,
control flow and arithmetic are not parsed: they are syntax errors here, so nothing unparsed ever runs.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_OPERATORS = ("&&", "||", ">>", ">&", ";", "&", "|", "\n", ">", "<")
_WORD_END = set(" \t\n;&|<>()")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IFS = re.compile(r"[ \t\n]+")
_GLOB_CHARS = set("*?[")


class ShellSyntaxError(ValueError):
    """What sh would refuse to run at all."""


@dataclass(frozen=True)
class Part:
    """A piece of a word: `lit` text, `subst` (a command's source text) or `var` (a parameter name); `quoted` parts
    are neither split into fields nor globbed."""

    kind: str
    text: str
    quoted: bool


@dataclass(frozen=True)
class Redirect:
    fd: int
    op: str  # ">", ">>", "<", ">&"
    target: tuple[Part, ...]


@dataclass(frozen=True)
class SimpleCommand:
    words: tuple[tuple[Part, ...], ...]
    redirects: tuple[Redirect, ...]


@dataclass(frozen=True)
class AndOr:
    """One pipeline and the operator before it (`;` for the first, and after `;`, `&` or a newline)."""

    connector: str
    pipeline: tuple[SimpleCommand, ...]


def parse(script: str) -> list[AndOr]:
    return _Parser(script).script()


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def skip_blanks(self) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t":
                self.i += 1
            elif c == "\\" and self.peek(2) == "\\\n":
                self.i += 2
            elif c == "#":  # a comment runs to the end of the line
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def operator(self) -> str | None:
        for op in _OPERATORS:
            if self.s.startswith(op, self.i):
                return op
        return None

    def script(self) -> list[AndOr]:
        items: list[AndOr] = []
        connector = ";"
        while True:
            self.skip_blanks()
            if self.i >= len(self.s):
                if connector in ("&&", "||", "|"):
                    raise ShellSyntaxError(f"unexpected end of input after '{connector}'")
                return items
            if self.peek() in ";&|":
                raise ShellSyntaxError(f"'{self.operator()}' unexpected")
            if self.peek() == "\n":
                self.i += 1
                continue
            items.append(AndOr(connector, self.pipeline()))
            self.skip_blanks()
            op = self.operator()
            if op is None:
                if self.i < len(self.s):
                    raise ShellSyntaxError(f"'{self.peek()}' unexpected")
                return items
            self.i += len(op)
            connector = ";" if op in ("\n", "&") else op

    def pipeline(self) -> tuple[SimpleCommand, ...]:
        commands = [self.simple_command()]
        while True:
            self.skip_blanks()
            if self.peek() == "|" and self.peek(2) != "||":
                self.i += 1
                self.skip_blanks()
                commands.append(self.simple_command())
            else:
                return tuple(commands)

    def simple_command(self) -> SimpleCommand:
        words: list[tuple[Part, ...]] = []
        redirects: list[Redirect] = []
        while True:
            self.skip_blanks()
            if self.i >= len(self.s):
                break
            fd_match = re.match(r"\d*(?=[<>])", self.s[self.i:])
            if fd_match is not None and self.s.startswith((">", "<"), self.i + fd_match.end()):
                self.i += fd_match.end()
                op = ">>" if self.peek(2) == ">>" else ">&" if self.peek(2) == ">&" else self.peek()
                self.i += len(op)
                self.skip_blanks()
                target = self.word()
                if not target:
                    raise ShellSyntaxError(f"missing target after '{op}'")
                default_fd = 0 if op == "<" else 1
                redirects.append(Redirect(int(fd_match.group()) if fd_match.group() else default_fd, op, target))
                continue
            if self.s[self.i] in _WORD_END:
                if self.s[self.i] in "()":
                    raise ShellSyntaxError(f"'{self.s[self.i]}' unexpected")
                break
            words.append(self.word())
        if not words and not redirects:
            raise ShellSyntaxError(f"'{self.operator() or 'end of input'}' unexpected")
        return SimpleCommand(tuple(words), tuple(redirects))

    def word(self) -> tuple[Part, ...]:
        parts: list[Part] = []
        while self.i < len(self.s) and self.s[self.i] not in _WORD_END:
            c = self.s[self.i]
            if c == "\\":
                if self.peek(2) == "\\\n":
                    self.i += 2
                    continue
                if self.i + 1 >= len(self.s):
                    raise ShellSyntaxError("a backslash at the end of the command")
                parts.append(Part("lit", self.s[self.i + 1], True))
                self.i += 2
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated quoted string")
                parts.append(Part("lit", self.s[self.i + 1:end], True))
                self.i = end + 1
            elif c == '"':
                self.i += 1
                parts += self.double_quoted()
            elif c in "$`":
                parts.append(self.expansion(quoted=False))
            else:
                parts.append(Part("lit", c, False))
                self.i += 1
        return tuple(parts)

    def double_quoted(self) -> list[Part]:
        """Inside "...": a backslash escapes only $ ` " \\ and newline; $ and backticks still expand."""
        parts: list[Part] = [Part("lit", "", True)]  # "" alone is an (empty) argument
        while True:
            if self.i >= len(self.s):
                raise ShellSyntaxError("unterminated quoted string")
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return parts
            if c == "\\" and self.peek(2)[1:] in ('$', '`', '"', '\\', '\n'):
                if self.s[self.i + 1] != "\n":
                    parts.append(Part("lit", self.s[self.i + 1], True))
                self.i += 2
            elif c in "$`":
                parts.append(self.expansion(quoted=True))
            else:
                parts.append(Part("lit", c, True))
                self.i += 1

    def expansion(self, quoted: bool) -> Part:
        if self.s[self.i] == "`":
            end = self.i + 1
            while end < len(self.s) and self.s[end] != "`":
                end += 2 if self.s[end] == "\\" else 1
            if end >= len(self.s):
                raise ShellSyntaxError("unterminated `...`")
            inner = re.sub(r"\\([$`\\])", r"\1", self.s[self.i + 1:end])
            parse(inner)
            self.i = end + 1
            return Part("subst", inner, quoted)
        rest = self.s[self.i + 1:]
        if rest.startswith("(("):
            raise ShellSyntaxError("arithmetic $((...)) is not supported by the simulated shell")
        if rest.startswith("("):
            end = _matching_paren(self.s, self.i + 2)
            inner = self.s[self.i + 2:end]
            parse(inner)  # sh refuses the whole line when a substitution in it does not parse
            self.i = end + 1
            return Part("subst", inner, quoted)
        if rest.startswith("{"):
            end = self.s.find("}", self.i + 2)
            if end < 0 or not (_NAME.fullmatch(self.s[self.i + 2:end]) or self.s[self.i + 2:end] == "?"):
                raise ShellSyntaxError("bad substitution")
            name = self.s[self.i + 2:end]
            self.i = end + 1
            return Part("var", name, quoted)
        if rest[:1] in ("?", "$", "#", "!", "0"):
            self.i += 2
            return Part("var", rest[0], quoted)
        m = _NAME.match(rest)
        if m:
            self.i += 1 + m.end()
            return Part("var", m.group(), quoted)
        self.i += 1
        return Part("lit", "$", quoted)


def _matching_paren(s: str, start: int) -> int:
    """The index of the `)` closing a `$(` whose body starts at `start` (nested parens and quotes skipped)."""
    depth, i = 1, start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                break
            i = end + 1
            continue
        if c == '"':
            i += 1
            while i < len(s) and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
            i += 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError("unterminated $(...)")


def glob_escape(text: str) -> str:
    """fnmatch pattern matching `text` literally (quoted glob characters are not globs)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


class Shell:
    """Runs a command line. `run(argv)` runs one simple command, giving (merged stdout and stderr, status);
    `glob(pattern)` lists matching paths (unmatched patterns stay as written, as mksh does); `write(path, data,
    append)` is where `>` and `>>` send output."""

    def __init__(self, run: Callable[[list[str]], tuple[str, int]], glob: Callable[[str], list[str]],
                 write: Callable[[str, bytes, bool], None], env: dict[str, str] | None = None):
        self._run = run
        self._glob = glob
        self._write = write
        self.env = dict(env or {})
        self.status = 0

    def execute(self, script: str) -> tuple[str, int]:
        try:
            items = parse(script)
        except ShellSyntaxError as exc:
            self.status = 2
            return f"/system/bin/sh: syntax error: {exc}\n", 2
        out: list[str] = []
        for item in items:
            if item.connector == "&&" and self.status != 0 or item.connector == "||" and self.status == 0:
                continue
            text = ""
            for command in item.pipeline:  # no command of ours reads stdin: a pipe's left side is run and dropped
                text = self._simple(command)
            out.append(text)
        return "".join(out), self.status

    def _simple(self, command: SimpleCommand) -> str:
        argv = [field for word in command.words for field in self._expand(word)]
        to_file: tuple[str, bool] | None = None
        for r in command.redirects:
            target = self._expand(r.target)
            if r.op in (">", ">>") and r.fd == 1:
                if len(target) != 1:
                    self.status = 1
                    return "/system/bin/sh: ambiguous redirect\n"
                to_file = (target[0], r.op == ">>")
            # `<` (nothing of ours reads stdin), `2>&1` (output is merged already) and `2>FILE` change nothing here
        try:
            text, self.status = self._run(argv) if argv else ("", 0)
        except OSError as exc:  # the sandbox refused (mkdir over a file, ...): the command fails, the phone lives on
            text, self.status = f"{argv[0]}: {exc.strerror}\n", 1
        if to_file is not None:
            path, append = to_file
            if path != "/dev/null":
                try:
                    self._write(path, text.encode(), append)
                except OSError as exc:
                    self.status = 1
                    return f"/system/bin/sh: cannot create {path}: {exc.strerror}\n"
            return ""
        return text

    def _value(self, part: Part) -> str:
        if part.kind == "var":
            return str(self.status) if part.text == "?" else self.env.get(part.text, "")
        saved = self.status
        text, _ = Shell(self._run, self._glob, self._write, self.env).execute(part.text)
        self.status = saved  # $? after a command is its own status, not that of a substitution in its arguments
        return text.rstrip("\n")

    def _expand(self, word: tuple[Part, ...]) -> list[str]:
        """Expansions, then field splitting of unquoted expansion results, then globbing of unquoted globs."""
        fields: list[tuple[str, str, bool]] = []
        text, pattern, globbing, started = "", "", False, False

        def add(piece: str, quoted: bool) -> None:
            nonlocal text, pattern, globbing, started
            text += piece
            pattern += glob_escape(piece) if quoted else piece
            globbing |= not quoted and bool(_GLOB_CHARS & set(piece))
            started = True

        def end_field() -> None:
            nonlocal text, pattern, globbing, started
            if started:
                fields.append((text, pattern, globbing))
            text, pattern, globbing, started = "", "", False, False

        for part in word:
            if part.kind == "lit":
                add(part.text, part.quoted)
                continue
            value = self._value(part)
            if part.quoted:
                add(value, True)
                continue
            pieces = _IFS.split(value)
            for k, piece in enumerate(pieces):
                if k > 0:
                    end_field()
                if piece:
                    add(piece, False)
        end_field()
        out: list[str] = []
        for field_text, field_pattern, field_globbing in fields:
            out += (self._glob(field_pattern) or [field_text]) if field_globbing else [field_text]
        return out
