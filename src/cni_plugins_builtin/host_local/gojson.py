"""Go ``encoding/json`` decoding rules for host-local: the shared emulation
(:mod:`cnicore.gojson`), re-exported under the names host-local uses."""

from __future__ import annotations

from cnicore.gojson import Decoder, fields, fold, kind, lookup

__all__ = ["Decoder", "fields", "fold", "kind", "lookup"]
