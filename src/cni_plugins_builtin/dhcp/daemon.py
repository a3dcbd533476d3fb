"""The DHCP client daemon: ``python -m cni_plugins_builtin.dhcp daemon [-socketpath P]``.

Listens on a unix socket (default /run/cni/dhcp.sock, as the reference) and
speaks the reference's wire there: Go's net/rpc over HTTP (:mod:`.rpc`, gob
:mod:`.gob`), service ``DHCP`` with ``Allocate(skel.CmdArgs) current.Result``
and ``Release(skel.CmdArgs) struct{}`` (:mod:`.messages`), so Go's dhcp plugin
and ours both use it. Each lease has a thread that renews it at T1 (or after
``-renewinterval`` seconds, for tests) and releases it on DEL.

Leases survive a restart: they are kept in ``<socket>.leases.json`` and taken
up again on start (renewed at once if T1 has passed); SIGTERM stops the daemon
without releasing them, as the reference's daemon.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any

from .client import RESEND_MAX, DHCPError, Exchange, open_socket
from .gob import GoType
from .messages import EMPTY, RESULT, result_to_gob, typed
from .packet import (
    OPT_CLASSLESS_ROUTES,
    OPT_LEASE_TIME,
    OPT_PARAMETER_LIST,
    OPT_REBINDING_TIME,
    OPT_RENEWAL_TIME,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_STATIC_ROUTES,
    OPT_SUBNET_MASK,
    Message,
    classless_routes,
    parse_option_name,
    static_routes,
)

DEFAULT_SOCKET = "/run/cni/dhcp.sock"
DEFAULT_LEASE_TIME = 3600
#: Retry a failed renewal after this many seconds.
RETRY = 5.0


def log(text: str) -> None:
    print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {text}", file=sys.stderr, flush=True)


def client_id(container_id: str, network: str, ifname: str) -> str:
    return f"{container_id}/{network}/{ifname}"[:254]


def prepare_options(cni_args: str, ipam: dict[str, Any]) -> dict[int, bytes]:
    """``provide`` (a value or one from CNI_ARGS) and ``request`` (the parameter list,
    router and subnet mask unless ``skipDefault``), as the reference's prepareOptions."""
    parsed = dict(pair.split("=", 1) for pair in cni_args.split(";") if "=" in pair)
    options: dict[int, bytes] = {}
    for item in ipam.get("provide") or []:
        name = str(item.get("option", ""))
        try:
            code = parse_option_name(name)
        except ValueError as exc:
            raise DHCPError(f'Can not parse option "{name}": {exc}') from None
        value = item.get("value") or ""
        if value:
            if len(value) > 255:
                raise DHCPError(f'value too long for option "{name}": "{value}"')
            options[code] = value.encode()
        from_arg = item.get("fromArg") or ""
        if from_arg in parsed:
            if len(parsed[from_arg]) > 255:
                raise DHCPError(f'value too long for option "{name}" from CNI_ARGS "{from_arg}": "{value}"')
            options[code] = parsed[from_arg].encode()
    wanted: list[int] = []
    skip_default = False
    for item in ipam.get("request") or []:
        skip_default = skip_default or bool(item.get("skipDefault"))
        name = str(item.get("option") or "")
        if not name:
            continue
        try:
            code = parse_option_name(name)
        except ValueError as exc:
            raise DHCPError(f'Can not parse option "{name}": {exc}') from None
        if code not in wanted:
            wanted.append(code)
    if not skip_default:
        wanted += [code for code in (OPT_ROUTER, OPT_SUBNET_MASK) if code not in wanted]
    if wanted:
        options[OPT_PARAMETER_LIST] = bytes(wanted)
    return options


class Lease:
    """A bound lease and the thread that keeps it: its state is what the file keeps."""

    def __init__(self, state: dict[str, Any], renew_interval: float) -> None:
        self.state = state
        self.renew_interval = renew_interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.retry_at = 0.0

    @staticmethod
    def state_from_ack(ack: Message, base: dict[str, Any]) -> dict[str, Any]:
        lease = ack.seconds(OPT_LEASE_TIME, DEFAULT_LEASE_TIME)
        mask = ack.address(OPT_SUBNET_MASK)
        if not mask:
            raise DHCPError("DHCP option Subnet Mask not found in DHCPACK")
        routes = classless_routes(ack.options.get(OPT_CLASSLESS_ROUTES, b""))
        router = ack.address(OPT_ROUTER)
        if not routes:
            routes = static_routes(ack.options.get(OPT_STATIC_ROUTES, b""))
            if router:
                routes.append(("0.0.0.0/0", router))
        prefix = bin(struct.unpack("!I", socket.inet_aton(mask))[0]).count("1")
        now = time.time()
        return dict(base, address=ack.yiaddr, prefix=prefix, router=router, routes=routes,
                    server=ack.address(OPT_SERVER_ID), bound=now,
                    renew_at=now + ack.seconds(OPT_RENEWAL_TIME, lease // 2),
                    rebind_at=now + ack.seconds(OPT_REBINDING_TIME, lease * 85 // 100),
                    expires=now + lease)

    def result(self, priority: int) -> dict[str, Any]:
        s = self.state
        ip: dict[str, Any] = {"address": f"{s['address']}/{s['prefix']}"}
        if s["router"]:
            ip["gateway"] = s["router"]
        routes = []
        for dst, gw in s["routes"]:
            route: dict[str, Any] = {"dst": dst, "gw": gw}
            if gw == "0.0.0.0":
                route["scope"] = 253
            if priority:
                route["priority"] = priority
            routes.append(route)
        return {"cniVersion": "1.1.0", "ips": [ip], "routes": routes}

    def exchange(self) -> Exchange:
        from cnicore.ns import with_netns_path

        sock, mac = with_netns_path(self.state["netns"], open_socket, self.state["ifname"])
        options = {int(k): bytes.fromhex(v) for k, v in self.state["options"].items()}
        return Exchange(sock, mac, self.state["client_id"], options, float(self.state.get("timeout", 10.0)),
                        float(self.state.get("resend_max", RESEND_MAX)))

    def next_renewal(self) -> float:
        if self.retry_at:
            return self.retry_at
        when = self.state["renew_at"]
        if self.renew_interval:
            when = min(when, self.state["bound"] + self.renew_interval)
        return when

    def maintain(self, save: Any) -> None:
        """Renew at T1 (unicast to the server); past T2, acquire again (broadcast), as the
        reference does; past the expiry, bring the link down and stop. Stopped (DEL):
        release. The link or namespace gone: stop."""
        cid = self.state["client_id"]
        while True:
            wait = max(0.0, self.next_renewal() - time.time())
            if self.stop.wait(wait):
                break
            try:
                exchange = self.exchange()
            except Exception as exc:  # noqa: BLE001 - the netns or the link is gone
                log(f"{cid}: interface {self.state['ifname']} gone ({exc}), terminating lease maintenance")
                return
            rebinding = time.time() >= self.state.get("rebind_at", self.state["expires"])
            try:
                if rebinding:
                    ack = exchange.acquire()
                else:
                    ack = exchange.renew(self.state["address"], self.state["server"])
                self.state = self.state_from_ack(ack, self.state)
                self.state["renewals"] = self.state.get("renewals", 0) + 1
                self.retry_at = 0.0
                save()
                log(f"{cid}: lease {'rebound' if rebinding else 'renewed'}, expiration is "
                    f"{time.ctime(self.state['expires'])}")
            except (DHCPError, OSError) as exc:
                log(f"{cid}: {'rebinding' if rebinding else 'renewal'} failed: {exc}")
                if time.time() >= self.state["expires"]:
                    log(f"{cid}: lease expired, bringing interface DOWN")
                    self.link_down()
                    return
                self.retry_at = time.time() + RETRY
            finally:
                exchange.close()
        self.release()

    def link_down(self) -> None:
        from cnicore.netlink import Netlink
        from cnicore.ns import with_netns_path

        def down() -> None:
            with Netlink() as nl:
                nl.set_up(nl.link(self.state["ifname"]), False)

        try:
            with_netns_path(self.state["netns"], down)
        except Exception as exc:  # noqa: BLE001 - nothing left to bring down
            log(f"{self.state['client_id']}: failed to bring {self.state['ifname']} interface DOWN: {exc}")

    def release(self) -> None:
        try:
            exchange = self.exchange()
        except Exception as exc:  # noqa: BLE001 - nothing left to release from
            log(f"{self.state['client_id']}: not released ({exc})")
            return
        try:
            exchange.release(self.state["address"], self.state["server"])
            log(f"{self.state['client_id']}: lease released")
        except OSError as exc:
            log(f"{self.state['client_id']}: failed to release DHCP lease: {exc}")
        finally:
            exchange.close()


class Daemon:
    """The ``DHCP`` service: its leases, their file, the two methods."""

    def __init__(self, socket_path: str, renew_interval: float = 0.0, timeout: float = 10.0,
                 host_prefix: str = "", resend_max: float = RESEND_MAX) -> None:
        self.socket_path = socket_path
        self.host_prefix = host_prefix
        self.acquiring: dict[str, threading.Lock] = {}
        self.store = socket_path + ".leases.json"
        self.renew_interval = renew_interval
        self.timeout = timeout
        self.resend_max = resend_max
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()

    # -- persistence -----------------------------------------------------------

    def save(self) -> None:
        from cnicore.fsutil import write_atomic

        with self.lock:
            data = {cid: lease.state for cid, lease in self.leases.items()}
            write_atomic(self.store, json.dumps(data).encode())

    def adopt(self) -> None:
        """Take up the leases of the file again (those whose netns still exists)."""
        try:
            with open(self.store) as fh:
                saved = json.load(fh)
        except FileNotFoundError:
            return
        for cid, state in saved.items():
            if not os.path.exists(state["netns"]) or state["expires"] < time.time():
                continue
            self._start(Lease(state, self.renew_interval))
            log(f"{cid}: lease adopted, expiration is {time.ctime(state['expires'])}")
        self.save()

    def _start(self, lease: Lease) -> None:
        with self.lock:
            self.leases[lease.state["client_id"]] = lease
        lease.thread = threading.Thread(target=lease.maintain, args=(self.save,), daemon=True)
        lease.thread.start()

    # -- the two calls ---------------------------------------------------------------
    # Their argument is skel.CmdArgs as gob decoded it (field names, StdinData bytes).

    @staticmethod
    def _netconf(args: dict[str, Any]) -> dict[str, Any]:
        try:
            conf = json.loads(typed(args, "StdinData", bytes, b""))
        except ValueError as exc:
            raise DHCPError(f"error parsing netconf: {exc}") from None
        if not isinstance(conf, dict):
            raise DHCPError("error parsing netconf: not a JSON object")
        return conf

    def allocate(self, args: dict[str, Any]) -> tuple[GoType, dict[str, Any]]:
        """``DHCP.Allocate``: the lease of this container, network and interface (acquired
        now if there is none) as current.Result."""
        conf = self._netconf(args)
        ipam: dict[str, Any] = conf["ipam"] if isinstance(conf.get("ipam"), dict) else {}
        cid = client_id(typed(args, "ContainerID", str, ""), str(conf.get("name", "")), typed(args, "IfName", str, ""))
        options = prepare_options(typed(args, "Args", str, ""), ipam)
        with self.lock:
            pending = self.acquiring.setdefault(cid, threading.Lock())
        with pending:  # one acquisition per client at a time: a repeated ADD finds the lease
            result = self._allocate(args, cid, options, int(ipam.get("priority") or 0))
        result.pop("cniVersion")  # the reference's daemon sets none: the plugin keeps its own
        return RESULT, result_to_gob(result)

    def _allocate(self, args: dict[str, Any], cid: str, options: dict[int, bytes], priority: int) -> dict[str, Any]:
        with self.lock:
            lease = self.leases.get(cid)
        if lease is None:
            from cnicore.ns import with_netns_path

            log(f"{cid}: acquiring lease")
            ifname = typed(args, "IfName", str, "")
            netns = self.host_prefix + typed(args, "Netns", str, "")
            sock, mac = with_netns_path(netns, open_socket, ifname)
            exchange = Exchange(sock, mac, cid, options, self.timeout, self.resend_max)
            try:
                ack = exchange.acquire()
            finally:
                exchange.close()
            base = {"client_id": cid, "netns": netns, "ifname": ifname, "timeout": self.timeout,
                    "resend_max": self.resend_max, "renewals": 0,
                    "options": {str(k): v.hex() for k, v in options.items()}}
            lease = Lease(Lease.state_from_ack(ack, base), self.renew_interval)
            self._start(lease)
            self.save()
            log(f"{cid}: lease acquired, expiration is {time.ctime(lease.state['expires'])}")
        return lease.result(priority)

    def release(self, args: dict[str, Any]) -> tuple[GoType, dict[str, Any]]:
        """``DHCP.Release``: stop maintaining the lease and send DHCPRELEASE."""
        conf = self._netconf(args)
        cid = client_id(typed(args, "ContainerID", str, ""), str(conf.get("name", "")), typed(args, "IfName", str, ""))
        with self.lock:
            lease = self.leases.pop(cid, None)
        if lease is not None:
            lease.stop.set()
            if lease.thread is not None:
                lease.thread.join(timeout=self.timeout + 5)
            self.save()
        return EMPTY, {}


class _Handler(socketserver.StreamRequestHandler):
    """One connection: net/rpc's HTTP handshake, then calls until the client hangs up."""

    def handle(self) -> None:
        from .rpc import serve_connection

        daemon: Daemon = self.server.daemon  # type: ignore[attr-defined]
        try:
            serve_connection(self.rfile, self.wfile.write, "DHCP",
                             {"Allocate": daemon.allocate, "Release": daemon.release})
        except OSError:
            pass  # the client went away


def _listener(socket_path: str) -> socket.socket:
    """systemd's socket (LISTEN_FDS=1, as the reference's cni-dhcp.socket), else a new one."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS"):
        count = int(os.environ["LISTEN_FDS"])
        if count != 1:
            raise SystemExit(f"Too many ({count}) FDs passed through socket activation")
        return socket.socket(fileno=3)
    os.makedirs(os.path.dirname(socket_path) or ".", mode=0o700, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    return listener


def serve(socket_path: str, *, renew_interval: float = 0.0, timeout: float = 10.0, pidfile: str = "",
          host_prefix: str = "", resend_max: float = RESEND_MAX) -> None:
    daemon = Daemon(host_prefix + socket_path, renew_interval, timeout, host_prefix, resend_max)
    if pidfile:
        if not os.path.isabs(pidfile):
            raise SystemExit(f'Error writing pidfile "{pidfile}": path not absolute')
        with open(pidfile, "w") as fh:
            fh.write(str(os.getpid()))
    server = socketserver.ThreadingUnixStreamServer(daemon.socket_path, _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = _listener(daemon.socket_path)
    server.daemon_threads = True
    server.daemon = daemon  # type: ignore[attr-defined]
    daemon.adopt()

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"listening on {daemon.socket_path}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for path in (daemon.socket_path, pidfile):
            if path and os.path.exists(path):
                os.unlink(path)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, flag: str = "") -> float:
    """Go's ``time.ParseDuration`` for the common forms (``10s``, ``1m30s``, ``500ms``);
    a bare number is seconds."""
    import re

    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f'invalid value "{text}" for flag -{flag}: parse error')
    return sum(float(n) * _UNITS[u] for n, u in parts)


#: The reference's daemon flags (1.1.1's, and ``-resendtimeout`` of later releases) and
#: ours (``-renewinterval``); the value kind decides the syntax, as Go's flag package.
_FLAGS = {"socketpath": "string", "pidfile": "string", "hostprefix": "string", "timeout": "duration",
          "resendmax": "duration", "resendtimeout": "duration", "broadcast": "bool", "renewinterval": "duration"}
_TRUE, _FALSE = ("1", "t", "T", "true", "TRUE", "True"), ("0", "f", "F", "false", "FALSE", "False")
USAGE = """Usage of daemon:
  -broadcast
        broadcast DHCP leases (accepted: the first exchange always asks the server to broadcast)
  -hostprefix string
        optional prefix to host root
  -pidfile string
        optional path to write daemon PID to
  -renewinterval duration
        renew a lease at most this long after it was bound (ours, for tests)
  -resendmax duration
        optional dhcp client max resend delay between requests (default 1m2s)
  -resendtimeout duration
        accepted for later releases' command lines; -timeout bounds each exchange
  -socketpath string
        optional dhcp server socketpath
  -timeout duration
        optional dhcp client timeout duration for each request (default 10s)"""


class HelpRequested(Exception):
    """``-h`` or ``-help``: the usage, and success (Go's flag.ErrHelp)."""


def parse_flags(argv: list[str]) -> dict[str, str]:
    """Go's flag syntax: ``-x v``, ``-x=v``, ``--x``; a bool flag alone is true; the first
    argument that is not a flag ends them. ValueError with Go's text on a bad one."""
    flags: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in ("-", "--"):
        name, equals, value = rest.pop(0).lstrip("-").partition("=")
        if name in ("h", "help"):
            raise HelpRequested
        kind = _FLAGS.get(name)
        if kind is None:
            raise ValueError(f"flag provided but not defined: -{name}")
        if kind == "bool":
            value = value if equals else "true"
            if value not in _TRUE + _FALSE:
                raise ValueError(f'invalid boolean value "{value}" for -{name}: parse error')
        elif not equals:
            if not rest:
                raise ValueError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        if kind == "duration":
            parse_duration(value, name)
        flags[name] = value
    return flags


def main(argv: list[str]) -> int:
    """``daemon [-socketpath P] [-pidfile F] [-hostprefix D] [-timeout 10s] [-resendmax 62s]
    [-broadcast] [-renewinterval S]``: the reference's flags, with Go's flag syntax.
    ``-renewinterval`` (ours, for tests): renew at most this long after binding, before T1."""
    if not argv or argv[0] != "daemon":
        print("usage: python -m cni_plugins_builtin.dhcp daemon [flags]\n" + USAGE, file=sys.stderr)
        return 2
    try:
        flags = parse_flags(argv[1:])
    except HelpRequested:
        print(USAGE, file=sys.stderr)
        return 0
    except ValueError as exc:
        print(f"{exc}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        serve(flags.get("socketpath") or DEFAULT_SOCKET,
              renew_interval=parse_duration(flags.get("renewinterval") or "0"),
              timeout=parse_duration(flags.get("timeout") or "10s"), pidfile=flags.get("pidfile", ""),
              host_prefix=flags.get("hostprefix", ""),
              resend_max=parse_duration(flags.get("resendmax") or "62s"))
    except (OSError, SystemExit) as exc:
        log(f"Error getting listener: {exc}" if isinstance(exc, OSError) else str(exc))
        return 1
    return 0
