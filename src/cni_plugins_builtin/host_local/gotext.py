"""Go's text conventions that show in host-local's behaviour and errors."""

from __future__ import annotations

#: Go's ``unicode.IsSpace``: what ``strings.TrimSpace`` and ``strings.Fields`` use.
GO_SPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
            "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def trim_space(text: str) -> str:
    """``strings.TrimSpace``."""
    return text.strip(GO_SPACE)


def go_fields(line: str) -> list[str]:
    """``strings.Fields``: the words between runs of Go whitespace."""
    out: list[str] = []
    word: list[str] = []
    for ch in line:
        if ch in GO_SPACE:
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def errno_text(exc: OSError) -> str:
    """Go's text for an errno: the C message with a lower-case first letter."""
    import os

    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return reason[:1].lower() + reason[1:]


def go_os_error(op: str, path: str, exc: OSError) -> str:
    """Go's ``*PathError`` text, e.g. ``open /x: no such file or directory``."""
    return f"{op} {path}: {errno_text(exc)}"
