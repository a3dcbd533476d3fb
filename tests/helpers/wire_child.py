"""Run by the wire property tests as ``python -IS wire_child.py ROOT``: the
environment a launcher gives a plugin (no site, ``json`` never imported).

Reads a marshalled list of documents on stdin and writes back, marshalled, one
``("ok", value)`` or ``("err", exception type, message)`` per document, then
the names of the modules ``json``/``re`` if reading imported them.
"""

import marshal
import sys

sys.path.insert(0, sys.argv[1])

from cnicore import wire  # noqa: E402

out = []
for doc in marshal.loads(sys.stdin.buffer.read()):
    try:
        out.append(("ok", wire.loads(doc)))
    except BaseException as exc:  # noqa: BLE001 - the test judges every outcome
        out.append(("err", type(exc).__name__, str(exc)))
for index, item in enumerate(out):
    try:
        marshal.dumps(item)
    except ValueError:  # nested too deeply to send back: send its keys
        out[index] = ("ok-deep", sorted(item[1]) if isinstance(item[1], dict) else type(item[1]).__name__)
out.append(("imported", [name for name in ("json", "json.decoder", "re") if name in sys.modules]))
sys.stdout.buffer.write(marshal.dumps(out))
