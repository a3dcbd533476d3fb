"""Go ``encoding/json`` decoding rules, for error-compatible config parsing.

The reference decodes its config straight into Go structs, so what it
accepts and the text of its errors come from ``encoding/json``:

* keys match struct fields exactly or, failing that, case-insensitively; a
  later key overwrites an earlier one; unknown keys are ignored;
* ``null`` leaves a field at its zero value;
* a value of the wrong JSON kind is remembered (the first one) and reported
  only after the whole document was decoded, while a failure inside a
  custom unmarshaller (a bad address) stops decoding at once — so a bad
  address anywhere wins over an earlier kind mismatch.

:class:`Decoder` keeps that state; the schema itself lives in :mod:`.config`.
"""

from __future__ import annotations

from cnicore import wire
from cnicore.errors import CNIError, ERR_INTERNAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator


kind = wire.json_kind


def fields(obj: dict[str, Any], names: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(field, value)`` for each key of ``obj`` that Go maps to one of ``names``,
    in document order (the caller assigns in order, so the last key wins)."""
    names = tuple(names)
    folded = {name.casefold(): name for name in names}
    for key, value in obj.items():
        name = key if key in names else folded.get(key.casefold())
        if name is not None:
            yield name, value


class Decoder:
    """The error state of one decode (see the module docstring)."""

    __slots__ = ("saved",)

    def __init__(self) -> None:
        self.saved: str | None = None

    @staticmethod
    def mismatch_text(value: object, go_type: str, struct: str, path: Iterable[str]) -> str:
        return (f"json: cannot unmarshal {kind(value)} into Go struct field "
                f"{struct}.{'.'.join(path)} of type {go_type}")

    def mismatch(self, value: object, go_type: str, struct: str, path: Iterable[str]) -> None:
        """A kind mismatch: remembered, decoding goes on."""
        if self.saved is None:
            self.saved = self.mismatch_text(value, go_type, struct, path)

    def fail(self, value: object, go_type: str, struct: str, path: Iterable[str]) -> CNIError:
        """A kind mismatch inside a custom unmarshaller: stops decoding (raise the result)."""
        return CNIError(ERR_INTERNAL, self.mismatch_text(value, go_type, struct, path))

    def finish(self) -> None:
        """Raise the remembered mismatch, if any, once decoding is over."""
        if self.saved is not None:
            raise CNIError(ERR_INTERNAL, self.saved)
