"""The DHCP client daemon: ``python -m cni_plugins_builtin.dhcp daemon [-socketpath P]``.

Listens on a unix socket (default /run/cni/dhcp.sock, as the reference) for the
IPAM plugin's requests: one JSON line ``{"method": "Allocate"|"Release",
"args": {...}}`` answered by one JSON line ``{"result": ...}`` or ``{"error":
"..."}`` (our own protocol: Go's daemon speaks Go net/rpc, so neither plugin
talks to the other's daemon). Each lease has a thread that renews it at T1 (or
after ``-renewinterval`` seconds, for tests) and releases it on DEL.

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

from .client import DHCPError, Exchange, open_socket
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
        self.renewals = 0
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
        return Exchange(sock, mac, self.state["client_id"], options, float(self.state.get("timeout", 10.0)))

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
                self.renewals += 1
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
    def __init__(self, socket_path: str, renew_interval: float = 0.0, timeout: float = 10.0,
                 host_prefix: str = "") -> None:
        self.socket_path = socket_path
        self.host_prefix = host_prefix
        self.acquiring: dict[str, threading.Lock] = {}
        self.store = socket_path + ".leases.json"
        self.renew_interval = renew_interval
        self.timeout = timeout
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

    # -- the two calls -----------------------------------------------------------

    def allocate(self, args: dict[str, Any]) -> dict[str, Any]:
        conf = json.loads(args["stdinData"])
        ipam = conf.get("ipam") or {}
        cid = client_id(args["containerID"], conf.get("name", ""), args["ifName"])
        options = prepare_options(args.get("args", ""), ipam)
        with self.lock:
            pending = self.acquiring.setdefault(cid, threading.Lock())
        with pending:  # one acquisition per client at a time: a repeated ADD finds the lease
            return self._allocate(args, cid, options, int(ipam.get("priority") or 0))

    def _allocate(self, args: dict[str, Any], cid: str, options: dict[int, bytes], priority: int) -> dict[str, Any]:
        with self.lock:
            lease = self.leases.get(cid)
        if lease is None:
            from cnicore.ns import with_netns_path

            log(f"{cid}: acquiring lease")
            netns = self.host_prefix + args["netns"]
            sock, mac = with_netns_path(netns, open_socket, args["ifName"])
            exchange = Exchange(sock, mac, cid, options, self.timeout)
            try:
                ack = exchange.acquire()
            finally:
                exchange.close()
            base = {"client_id": cid, "netns": netns, "ifname": args["ifName"], "timeout": self.timeout,
                    "options": {str(k): v.hex() for k, v in options.items()}}
            lease = Lease(Lease.state_from_ack(ack, base), self.renew_interval)
            self._start(lease)
            self.save()
            log(f"{cid}: lease acquired, expiration is {time.ctime(lease.state['expires'])}")
        return lease.result(priority)

    def release(self, args: dict[str, Any]) -> dict[str, Any]:
        conf = json.loads(args["stdinData"])
        cid = client_id(args["containerID"], conf.get("name", ""), args["ifName"])
        with self.lock:
            lease = self.leases.pop(cid, None)
        if lease is not None:
            lease.stop.set()
            if lease.thread is not None:
                lease.thread.join(timeout=self.timeout + 5)
            self.save()
        return {}

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {cid: dict(lease.state, renewals=lease.renewals) for cid, lease in self.leases.items()}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        daemon: Daemon = self.server.daemon  # type: ignore[attr-defined]
        try:
            request = json.loads(self.rfile.readline())
            method = {"Allocate": daemon.allocate, "Release": daemon.release,
                      "Status": lambda _args: daemon.status()}.get(request.get("method"))
            if method is None:
                raise DHCPError(f"rpc: can't find method {request.get('method')}")
            reply: dict[str, Any] = {"result": method(request.get("args") or {})}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the plugin
            reply = {"error": str(exc) or type(exc).__name__}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


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
          host_prefix: str = "") -> None:
    daemon = Daemon(host_prefix + socket_path, renew_interval, timeout, host_prefix)
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


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` for the common forms (``10s``, ``1m30s``, ``500ms``);
    a bare number is seconds."""
    import re

    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SystemExit(f'invalid value "{text}" for flag: parse error')
    return sum(float(n) * _UNITS[u] for n, u in parts)


#: The reference's daemon flags: those cnicore's daemon has no use for are accepted and ignored.
_IGNORED_FLAGS = ("resendmax", "resendtimeout", "broadcast")


def main(argv: list[str]) -> int:
    """``daemon [-socketpath P] [-pidfile F] [-hostprefix D] [-timeout 10s]
    [-renewinterval S]``, with Go's flag syntax (one or two dashes, ``-x v`` or ``-x=v``).
    ``-renewinterval`` (ours, for tests): renew at most this long after binding, before T1."""
    if not argv or argv[0] != "daemon":
        print("usage: python -m cni_plugins_builtin.dhcp daemon [-socketpath PATH] [-pidfile PATH] "
              "[-hostprefix DIR] [-timeout DURATION] [-renewinterval DURATION]", file=sys.stderr)
        return 2
    flags: dict[str, str] = {}
    rest = argv[1:]
    while rest:
        name, equals, value = rest.pop(0).lstrip("-").partition("=")
        if not equals and name != "broadcast":
            value = rest.pop(0) if rest else ""
        if name not in ("socketpath", "pidfile", "hostprefix", "timeout", "renewinterval", *_IGNORED_FLAGS):
            print(f"flag provided but not defined: -{name}", file=sys.stderr)
            return 2
        flags[name] = value
    serve(flags.get("socketpath") or DEFAULT_SOCKET, renew_interval=parse_duration(flags.get("renewinterval") or "0"),
          timeout=parse_duration(flags.get("timeout") or "10s"), pidfile=flags.get("pidfile", ""),
          host_prefix=flags.get("hostprefix", ""))
    return 0
