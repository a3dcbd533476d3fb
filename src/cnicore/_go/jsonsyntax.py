"""The syntax error Go's ``encoding/json`` reports for a document, in Go's words.

Go checks the whole input with its scanner before decoding anything, so the
first error in the text wins and reads like ``invalid character 'x' after
object key`` or ``unexpected end of JSON input``. Runtimes and users see
those texts from the reference plugins; ours say the same. Only the error
path runs this (a byte-at-a-time state machine over the raw bytes, with runs
of whitespace and string contents skipped at C speed).
"""

from __future__ import annotations

from cnicore.wire import MAX_DEPTH, go_quote

_SPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = b'bfnrt\\/"'
#: Every byte a string may hold unescaped, deleted; what is left are control characters.
_NOT_CONTROL = bytes(range(0x20, 0x100))
#: Go's scanner ends the input by feeding it one space: a token cut short fails on it.
_EOF = 0x20
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}


def quote_char(byte: int) -> str:
    """Go's ``quoteChar``: the offending byte as Go prints it."""
    if byte == ord("'"):
        return "'\\''"
    if byte == ord('"'):
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


class _Syntax(Exception):
    pass


def _fail(byte: int, context: str) -> _Syntax:
    return _Syntax(f"invalid character {quote_char(byte)} {context}")


class _Scanner:
    __slots__ = ("data", "pos", "stack")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.stack: list[int] = []

    def _skip_space(self) -> int | None:
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in _SPACE:
            if data[pos] == 0x20 and data.startswith(b"    ", pos):
                stripped = data[pos:].lstrip(_SPACE)  # a long run: skip it in C
                pos = len(data) - len(stripped)
                break
            pos += 1
        self.pos = pos
        return data[pos] if pos < len(data) else None

    def value(self) -> None:
        """One value, iteratively (the nesting lives in ``stack``)."""
        while True:
            byte = self._skip_space()
            if byte is None:
                raise _Syntax("unexpected end of JSON input")
            if byte in b"[{":
                self.stack.append(byte)
                if len(self.stack) > MAX_DEPTH:
                    raise _fail(byte, "exceeded max depth")
                self.pos += 1
                nxt = self._skip_space()
                if byte == ord("[") and nxt == ord("]") or byte == ord("{") and nxt == ord("}"):
                    self.stack.pop()
                    self.pos += 1
                    if not self._after_value():
                        return
                    continue
                if byte == ord("{"):
                    self._key()
                continue
            self._scalar(byte)
            if not self._after_value():
                return

    def _key(self) -> None:
        byte = self._skip_space()
        if byte is None:
            raise _Syntax("unexpected end of JSON input")
        if byte != ord('"'):
            raise _fail(byte, "looking for beginning of object key string")
        self._string()
        byte = self._skip_space()
        if byte is None:
            raise _Syntax("unexpected end of JSON input")
        if byte != ord(":"):
            raise _fail(byte, "after object key")
        self.pos += 1

    def _after_value(self) -> bool:
        """After a complete value: True if another value follows inside a container."""
        while self.stack:
            byte = self._skip_space()
            if byte is None:
                raise _Syntax("unexpected end of JSON input")
            top = self.stack[-1]
            if byte == ord(","):
                self.pos += 1
                if top == ord("{"):
                    self._key()
                return True
            if top == ord("{") and byte == ord("}") or top == ord("[") and byte == ord("]"):
                self.stack.pop()
                self.pos += 1
                continue
            raise _fail(byte, "after object key:value pair" if top == ord("{") else "after array element")
        return False

    def _scalar(self, byte: int) -> None:
        if byte == ord('"'):
            self._string()
        elif byte == ord("-") or byte in _DIGITS:
            self._number()
        elif byte in _LITERALS:
            word = _LITERALS[byte]
            for index in range(1, len(word)):
                pos = self.pos + index
                got = self.data[pos] if pos < len(self.data) else _EOF
                if got != word[index]:
                    raise _fail(got, f"in literal {word.decode()} (expecting {chr(word[index])!r})")
            self.pos += len(word)
        else:
            raise _fail(byte, "looking for beginning of value")

    def _string(self) -> None:
        data, pos = self.data, self.pos + 1
        while True:
            quote, backslash = data.find(b'"', pos), data.find(b"\\", pos)
            end = quote if backslash < 0 or 0 <= quote < backslash else backslash
            if end < 0:
                end = len(data)
            controls = data[pos:end].translate(None, _NOT_CONTROL)
            if controls:
                raise _fail(controls[0], "in string literal")
            if end == len(data):
                raise _Syntax("unexpected end of JSON input")
            if end == quote:
                self.pos = quote + 1
                return
            pos = end + 1
            escape = data[pos] if pos < len(data) else _EOF
            if escape == ord("u"):
                for index in range(1, 5):
                    digit = data[pos + index] if pos + index < len(data) else _EOF
                    if digit not in _HEX:
                        raise _fail(digit, "in \\u hexadecimal character escape")
                pos += 5
            elif escape in _ESCAPES:
                pos += 1
            else:
                raise _fail(escape, "in string escape code")

    def _number(self) -> None:
        data, pos = self.data, self.pos

        def at(index: int) -> int:
            return data[index] if index < len(data) else _EOF

        if at(pos) == ord("-"):
            pos += 1
            if at(pos) not in _DIGITS:
                raise _fail(at(pos), "in numeric literal")
        if at(pos) == ord("0"):
            pos += 1
        else:
            while at(pos) in _DIGITS:
                pos += 1
        if at(pos) == ord("."):
            pos += 1
            if at(pos) not in _DIGITS:
                raise _fail(at(pos), "after decimal point in numeric literal")
            while at(pos) in _DIGITS:
                pos += 1
        if at(pos) in (ord("e"), ord("E")):
            pos += 1
            if at(pos) in (ord("+"), ord("-")):
                pos += 1
            if at(pos) not in _DIGITS:
                raise _fail(at(pos), "in exponent of numeric literal")
            while at(pos) in _DIGITS:
                pos += 1
        self.pos = pos


def syntax_error(data: bytes) -> str | None:
    """Go's message for the first syntax error in ``data``, or None if it is valid JSON."""
    scanner = _Scanner(data)
    try:
        scanner.value()
        byte = scanner._skip_space()
        if byte is not None:
            raise _fail(byte, "after top-level value")
    except _Syntax as exc:
        return str(exc)
    return None
