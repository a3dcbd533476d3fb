"""Go's ``pkg/utils`` (public toolkit): names and comments of a container's netfilter objects.

Cross-implementation teardown and GC only work if both sides derive the very
same chain names and comments from (network, container ID, ifname), so these
follow ``pkg/utils/utils.go`` and ``pkg/ip/ipmasq_nftables_linux.go`` of the
reference, including Go's ``%q`` quoting: :func:`format_chain_name` is
``utils.FormatChainName``, :func:`must_format_chain_name_with_prefix` and
:func:`must_format_hash_with_prefix` the ``Must...`` functions (a
``ValueError`` where Go panics). Every plugin that masquerades or keeps
per-container chains uses these, so the names agree everywhere.

Also here, for error messages that read as the reference's: Go's
``strings.TrimSpace`` / ``strings.Fields`` (:func:`trim_space`,
:func:`go_fields`) and an OS error as Go prints it (:func:`go_os_error`,
:func:`errno_text`).
"""

from __future__ import annotations

from cnicore._go import errno_text, go_fields, go_os_error, trim_space

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "CHAIN_PREFIX",
    "MAX_CHAIN_LENGTH",
    "errno_text",
    "format_chain_name",
    "format_comment",
    "go_fields",
    "go_os_error",
    "go_quote",
    "go_unquote",
    "must_format_chain_name_with_prefix",
    "must_format_hash_with_prefix",
    "parse_comment",
    "spoofcheck_ref_id",
    "trim_space",
]

#: Every chain name made by :func:`format_chain_name` has exactly this length.
MAX_CHAIN_LENGTH = 28
CHAIN_PREFIX = "CNI-"
#: Length of a full hex sha512 digest, the longest hash we can produce.
MAX_HASH_LEN = 128
#: knftables truncates rule comments to this many bytes (nft's own limit).
NFT_COMMENT_MAX = 128

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r",
               "\t": r"\t", "\v": r"\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """``text`` quoted like Go's ``strconv.Quote`` (what ``%q`` prints).

    Printable characters stay as they are (Go's ``unicode.IsPrint`` and
    Python's ``isprintable`` agree: letters, marks, numbers, punctuation,
    symbols and the ASCII space); the rest use Go's lower-case escapes.
    """
    out = ['"']
    for ch in text:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_unquote(quoted: str) -> str | None:
    """Inverse of :func:`go_quote`; None unless ``quoted`` is exactly what go_quote makes.

    Used to read container IDs back out of comments during GC; the strict
    round-trip check means a foreign comment is never misread as ours.
    """
    import ast

    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None
    try:
        value = ast.literal_eval(quoted)  # Go's escapes are a subset of Python's
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, str) or go_quote(value) != quoted:
        return None
    return value


def must_format_hash_with_prefix(length: int, prefix: str, to_hash: str) -> str:
    """``prefix`` + hex sha512 of ``to_hash``, cut to ``length`` (Go's MustFormatHashWithPrefix)."""
    import hashlib

    if len(prefix.encode()) >= length or length > MAX_HASH_LEN:
        raise ValueError("invalid length")
    return (prefix + hashlib.sha512(to_hash.encode("utf-8", "surrogateescape")).hexdigest())[:length]


def must_format_chain_name_with_prefix(name: str, container_id: str, prefix: str) -> str:
    """``CNI-<prefix><hash>`` of exactly 28 characters (Go's MustFormatChainNameWithPrefix)."""
    return must_format_hash_with_prefix(MAX_CHAIN_LENGTH, CHAIN_PREFIX + prefix, name + container_id)


def format_chain_name(name: str, container_id: str) -> str:
    """The per-container iptables chain: ``CNI-`` + 24 hex chars of sha512(name+id)."""
    return must_format_chain_name_with_prefix(name, container_id, "")


def format_comment(name: str, container_id: str) -> str:
    """The iptables rule comment ``name: "<network>" id: "<containerID>"``."""
    return f"name: {go_quote(name)} id: {go_quote(container_id)}"


def parse_comment(comment: str, name: str) -> str | None:
    """The container ID of a :func:`format_comment` comment for network ``name``, else None."""
    prefix = f"name: {go_quote(name)} id: "
    if not comment.startswith(prefix):
        return None
    return go_unquote(comment[len(prefix):])


def nft_hash_for_network(network: str) -> str:
    """16 hex chars identifying a network; the prefix of its nftables masquerade comments."""
    return must_format_hash_with_prefix(16, "", network)


def nft_hash_for_instance(network: str, ifname: str, container_id: str) -> str:
    """``<network hash>-<hash of "ifname:containerID">``: one attachment's rules."""
    return nft_hash_for_network(network) + "-" + must_format_hash_with_prefix(16, "", f"{ifname}:{container_id}")


def nft_comment_for_instance(network: str, ifname: str, container_id: str) -> str:
    """The nftables masquerade rule comment: the hash, then a readable (maybe cut) description."""
    comment = "{}, net: {}, if: {}, id: {}".format(
        nft_hash_for_instance(network, ifname, container_id),
        network.replace('"', ""), ifname.replace('"', ""), container_id.replace('"', ""))
    raw = comment.encode("utf-8", "surrogateescape")
    if len(raw) > NFT_COMMENT_MAX:
        # Go cuts bytes; never leave half a UTF-8 sequence (nft would reject it).
        comment = raw[:NFT_COMMENT_MAX].decode(errors="ignore")
    return comment


def spoofcheck_ref_id(container_id: str, ifname: str) -> str:
    """The bridge's ``uniqueID``: ``<containerID>-<ifname>``, the spoof-check rule-set label."""
    return f"{container_id}-{ifname}"
