"""``resolvConf``: a resolv.conf file read into the result's DNS section.

Same reading as the reference: ``nameserver`` and ``search``/``options``
accumulate, ``domain`` keeps the last one, comments (``#``, ``;``) and lines
with fewer than two fields are skipped.
"""

from __future__ import annotations

from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.utils import go_fields, go_os_error, trim_space

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.types import DNS

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

def parse_resolv_conf_text(text: str) -> DNS:
    """The DNS settings in resolv.conf ``text``."""
    from cnicore.types import DNS

    dns = DNS()
    for raw in text.split("\n"):
        line = trim_space(raw)
        if not line or line[0] in "#;":
            continue
        words = go_fields(line)
        if len(words) < 2:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver":
            dns.nameservers.append(values[0])
        elif key == "domain":
            dns.domain = values[0]
        elif key == "search":
            dns.search.extend(values)
        elif key == "options":
            dns.options.extend(values)
    return dns


def parse_resolv_conf(path: str) -> DNS:
    """Read ``path``; an unreadable file is the reference's error (code 999)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError as exc:
        raise CNIError(ERR_INTERNAL, go_os_error("read", path, exc)) from None
    except OSError as exc:
        raise CNIError(ERR_INTERNAL, go_os_error("open", path, exc)) from None
    return parse_resolv_conf_text(data.decode("utf-8", "replace"))
