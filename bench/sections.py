"""The bench's sections: each measures Go and ours interleaved, round by round.

Every function runs inside the sandbox's private host namespace (the caller
enters it) and returns :class:`measure.Case` objects. Go and ours each get
their own network name, bridge, subnet and data directories, so the two
never share kernel objects or files; containers are fresh namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from measure import Case, cpu_ticks, run_exec, run_with_rss
from sides import Go, Ours, clean_env

PLUGINS = ("loopback", "bridge", "host-local", "tuning")
SUBNETS = {"go": "10.241.0.0/16", "ours": "10.242.0.0/16"}


def chain_plugins(side: str, work: str) -> list[dict[str, Any]]:
    """bridge (+ host-local) then tuning, as the issue's chain."""
    return [
        {"type": "bridge", "bridge": f"br-{side}", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": SUBNETS[side], "dataDir": os.path.join(work, side, "ipam")}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}, "mtu": 1400,
         "dataDir": os.path.join(work, side, "tuning")},
    ]


def conflist(side: str, work: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": f"bench-{side}", "plugins": chain_plugins(side, work)}


def write_conflist(side: str, work: str) -> str:
    """The list as a file in ``<work>/<side>/net.d`` (cnitool reads NETCONFPATH); its path."""
    confdir = os.path.join(work, side, "net.d")
    os.makedirs(confdir, exist_ok=True)
    path = os.path.join(confdir, f"bench-{side}.conflist")
    with open(path, "w") as fh:
        json.dump(conflist(side, work), fh)
    return path


def bin_dirs(go: Go, ours: Ours) -> dict[str, str]:
    return {"go": go.bin_dir, "ours": ours.bin_dir}


# -- VERSION per plugin, and loopback's ADD/DEL -------------------------------------------------

def version(sandbox: Any, go: Go, ours: Ours, rounds: int) -> list[Case]:
    """VERSION of every plugin, then loopback ADD and DEL (the smallest real work)."""
    env = clean_env(CNI_COMMAND="VERSION")
    cases = {name: Case("per plugin exec", f"VERSION {name}") for name in PLUGINS}
    dirs = bin_dirs(go, ours)
    for _ in range(rounds):
        for name, case in cases.items():
            for side in ("go", "ours"):
                case.add(side, run_exec([os.path.join(dirs[side], name)], env)[0])
    for name, case in cases.items():
        for side in ("go", "ours"):
            case.rss(side, run_with_rss([os.path.join(dirs[side], name)], env)[0])
    loopback = {verb: Case("per plugin exec", f"loopback {verb}") for verb in ("ADD", "DEL")}
    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench-lo", "type": "loopback"}).encode()
    ctr = sandbox.container()
    for index in range(rounds + 1):
        for side in ("go", "ours"):
            for verb, case in loopback.items():
                argv = [os.path.join(dirs[side], "loopback")]
                verb_env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID="bench-lo", CNI_NETNS=ctr.path,
                                     CNI_IFNAME="lo", CNI_ARGS="", CNI_PATH=dirs[side])
                if index == rounds:
                    case.rss(side, run_with_rss(argv, verb_env, conf)[0])
                else:
                    case.add(side, run_exec(argv, verb_env, conf)[0])
    ctr.remove()
    return list(cases.values()) + list(loopback.values())


# -- the chain, exec by exec ---------------------------------------------------------------

def _exec_chain(side: str, bin_dir: str, work: str, command: str, cid: str, netns: str,
                prev: dict[str, Any] | None, cases: dict[str, Case]) -> dict[str, Any] | None:
    """One chain verb as a runtime execs it; each plugin exec timed into ``cases``."""
    from cnicore import wire

    plugins = chain_plugins(side, work)
    order = plugins if command != "DEL" else list(reversed(plugins))
    env = clean_env(CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0",
                    CNI_PATH=bin_dir, CNI_ARGS="")
    result = prev
    for plugin in order:
        conf = dict(plugin, cniVersion="1.0.0", name=f"bench-{side}")
        if result is not None:
            conf["prevResult"] = result
        seconds, out = run_exec([os.path.join(bin_dir, plugin["type"])], env, json.dumps(conf).encode())
        cases[f"{command} {plugin['type']}"].add(side, seconds)
        if command == "ADD":
            result = wire.loads(out)
    return result


def chain_exec(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    cases = {f"{verb} {plugin}": Case("chain exec by exec", f"{verb} {plugin}")
             for verb in ("ADD", "CHECK", "DEL") for plugin in ("bridge", "tuning")}
    totals = {verb: Case("chain exec by exec", f"{verb} chain") for verb in ("ADD", "CHECK", "DEL")}
    dirs = bin_dirs(go, ours)
    for index in range(rounds):
        for side in ("go", "ours"):
            ctr = sandbox.container()
            cid = f"bench-exec-{index}"
            result = totals["ADD"].timed(side, lambda: _exec_chain(side, dirs[side], work, "ADD", cid, ctr.path,
                                                                   None, cases))
            for verb in ("CHECK", "DEL"):
                totals[verb].timed(side, lambda: _exec_chain(side, dirs[side], work, verb, cid, ctr.path,
                                                             result, cases))
            ctr.remove()
    return list(totals.values()) + list(cases.values())


# -- portmap: ADD and DEL of the chained plugin alone ------------------------------------------

def portmap(sandbox: Any, go: Go, ours: Ours, rounds: int) -> list[Case]:
    """portmap ADD then DEL, exec'd with a bridge-like prevResult (one IPv4 address), for one
    and for ten TCP mappings. Go execs iptables per probe and per rule; ours reads the table
    once and writes it in one iptables-restore. Each side has its own network name (so its
    own per-container chains) in the same namespace, and leaves nothing behind per round."""
    dirs = bin_dirs(go, ours)
    cases = {(verb, n): Case("portmap", f"{verb} {n} mapping{'s' if n > 1 else ''}")
             for n in (1, 10) for verb in ("ADD", "DEL")}
    ctr = sandbox.container()
    for index in range(rounds):
        for count in (1, 10):
            for side in ("go", "ours"):
                maps = [{"hostPort": 18000 + i, "containerPort": 80 + i, "protocol": "tcp"} for i in range(count)]
                ip = "10.241.0.2/16" if side == "go" else "10.242.0.2/16"
                prev = {"cniVersion": "1.0.0",
                        "interfaces": [{"name": f"br-{side}"}, {"name": "eth0", "sandbox": ctr.path}],
                        "ips": [{"address": ip, "interface": 1}]}
                conf = json.dumps({"cniVersion": "1.0.0", "name": f"bench-pm-{side}", "type": "portmap",
                                   "runtimeConfig": {"portMappings": maps}, "prevResult": prev}).encode()
                for verb in ("ADD", "DEL"):
                    env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-pm-{index}", CNI_NETNS=ctr.path,
                                    CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                    cases[(verb, count)].add(side, run_exec([os.path.join(dirs[side], "portmap")], env, conf)[0])
    ctr.remove()
    return list(cases.values())


# -- the chain through libcni and through cnitool -----------------------------------------------

def chain_libcni(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """Ours: cnicore.libcni in this (warm) process, exec'ing our launchers — as a
    runtime links it. Go: the golibcni driver, a whole Go process around Go's libcni."""
    from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_file

    note = "Go side: whole golibcni process (Go's libcni); ours: cnicore.libcni called in a warm process"
    cases = {verb: Case("chain through libcni", verb, note) for verb in ("ADD", "CHECK", "DEL")}
    if go.golibcni is None:
        return [_skipped("chain through libcni", go.why_not)]
    files = {side: write_conflist(side, work) for side in ("go", "ours")}
    ours_cni = CNIConfig([ours.bin_dir], cache_dir=os.path.join(work, "ours", "cache-libcni"))
    ours_list = conf_list_from_file(files["ours"])
    go_env = clean_env(CNI_PATH=go.bin_dir)
    for index in range(rounds):
        for side in ("go", "ours"):
            ctr = sandbox.container()
            cid = f"bench-libcni-{index}"
            for verb in ("ADD", "CHECK", "DEL"):
                if side == "go":
                    argv = [go.golibcni, verb.lower(), files["go"], cid, ctr.path, "eth0",
                            os.path.join(work, "go", "cache-libcni")]
                    cases[verb].add("go", run_exec(argv, go_env)[0])
                else:
                    rt = RuntimeConf(cid, ctr.path, "eth0")
                    call = {"ADD": ours_cni.add_network_list, "CHECK": ours_cni.check_network_list,
                            "DEL": ours_cni.del_network_list}[verb]
                    cases[verb].timed("ours", lambda: call(ours_list, rt))
            ctr.remove()
    return list(cases.values())


def chain_cnitool(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """Whole processes: our ``cnitool add|check|del`` with our launchers against the
    golibcni driver with Go's plugins (Go's cnitool is that libcni plus flag parsing)."""
    note = "Go side: golibcni driver (Go's cnitool is not packaged; it wraps the same libcni)"
    cases = {verb: Case("chain through cnitool", verb, note) for verb in ("ADD", "CHECK", "DEL")}
    if go.golibcni is None:
        return [_skipped("chain through cnitool", go.why_not)]
    files = {side: write_conflist(side, work) for side in ("go", "ours")}
    ours_env = clean_env(CNI_PATH=ours.bin_dir, NETCONFPATH=os.path.dirname(files["ours"]),
                         CNI_CACHE_DIR=os.path.join(work, "ours", "cache-cnitool"))
    go_env = clean_env(CNI_PATH=go.bin_dir)
    for index in range(rounds + 1):
        for side in ("go", "ours"):
            ctr = sandbox.container()
            for verb in ("ADD", "CHECK", "DEL"):
                if side == "go":
                    argv = [go.golibcni, verb.lower(), files["go"], f"bench-cnitool-{index}", ctr.path, "eth0",
                            os.path.join(work, "go", "cache-cnitool")]
                    env = go_env
                else:
                    argv, env = [ours.cnitool, verb.lower(), "bench-ours", ctr.path], ours_env
                if index == rounds:  # one extra round, under GNU time, for peak RSS
                    cases[verb].rss(side, run_with_rss(argv, env)[0])
                else:
                    cases[verb].add(side, run_exec(argv, env)[0])
            ctr.remove()
    return list(cases.values())


# -- the meta plugins firewall and bandwidth ---------------------------------------------------

META_SUBNETS = {"go": "10.243.0.0/24", "ours": "10.244.0.0/24"}
BANDWIDTH = {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 16_000_000, "egressBurst": 160_000}


def meta(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """firewall (iptables) and bandwidth (ingress + egress) ADD and DEL, each exec'd,
    chained after Go's bridge (not timed) on each side's own bridge and subnet."""
    from cnicore import wire

    cases = {f"{plugin} {verb}": Case("meta plugins", f"{plugin} {verb}")
             for plugin in ("firewall", "bandwidth") for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    for index in range(rounds + 1):  # round 0 creates the bridges and chains: not counted
        for side in ("go", "ours"):
            ctr = sandbox.container()
            cid = f"bench-meta-{index}"
            env = {verb: clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=cid, CNI_NETNS=ctr.path, CNI_IFNAME="eth0",
                                   CNI_PATH=go.bin_dir, CNI_ARGS="") for verb in ("ADD", "DEL")}
            bridge_conf = json.dumps({"cniVersion": "1.0.0", "name": f"bench-meta-{side}", "type": "bridge",
                                      "bridge": f"cnimeta-{side}", "isGateway": True,
                                      "ipam": {"type": "host-local", "subnet": META_SUBNETS[side],
                                               "dataDir": os.path.join(work, side, "meta-ipam")}}).encode()
            prev = wire.loads(run_exec([os.path.join(go.bin_dir, "bridge")], env["ADD"], bridge_conf)[1])
            confs = {"firewall": {"backend": "iptables"}, "bandwidth": BANDWIDTH}
            for verb in ("ADD", "DEL"):
                order = ("firewall", "bandwidth") if verb == "ADD" else ("bandwidth", "firewall")
                for plugin in order:
                    conf = dict(confs[plugin], cniVersion="1.0.0", name=f"bench-meta-{side}", type=plugin,
                                prevResult=prev)
                    seconds = run_exec([os.path.join(dirs[side], plugin)], dict(env[verb], CNI_PATH=dirs[side]),
                                       json.dumps(conf).encode())[0]
                    if index:
                        cases[f"{plugin} {verb}"].add(side, seconds)
            run_exec([os.path.join(go.bin_dir, "bridge")], env["DEL"], bridge_conf)
            ctr.remove()
    return list(cases.values())


# -- bridge's own work in a warm process ----------------------------------------------------------

def bridge_warm(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """Ours: bridge ADD/DEL served by skel.run in this process (host-local in-process
    too). Go: the whole bridge process (which execs Go's host-local)."""
    import cni_plugins_builtin.bridge.plugin as bridge
    from cnicore import skel
    from cnicore.host import PluginHost

    note = "ours: skel.run in a warm process, host-local in-process; Go: whole bridge process"
    cases = {verb: Case("bridge work, warm", verb, note) for verb in ("ADD", "DEL")}
    host = PluginHost(bridge, "bridge")
    confs = {side: json.dumps(dict(chain_plugins(side, work)[0], cniVersion="1.0.0",
                                   name=f"bench-{side}")).encode() for side in ("go", "ours")}
    ctrs = {side: [sandbox.container() for _ in range(rounds + 2)] for side in ("go", "ours")}

    def call(side: str, verb: str, index: int) -> None:
        ctr = ctrs[side][index]
        env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-warm-{index}", CNI_NETNS=ctr.path,
                        CNI_IFNAME="eth0", CNI_ARGS="", CNI_PATH=ours.bin_dir if side == "ours" else go.bin_dir)
        if side == "go":
            seconds = run_exec([os.path.join(go.bin_dir, "bridge")], env, confs["go"])[0]
        else:
            start = time.perf_counter()
            code, out, err = skel.run(host, env, confs["ours"])
            seconds = time.perf_counter() - start
            if code != 0:
                raise RuntimeError(f"bridge {verb} failed: {out!r} {err!r}")
        if index >= 2:  # the first two warm up caches and create the bridge
            cases[verb].add(side, seconds)

    for verb in ("ADD", "DEL"):
        for index in range(rounds + 2):
            for side in ("go", "ours"):
                call(side, verb, index)
    for side in ("go", "ours"):
        for ctr in ctrs[side]:
            ctr.remove()
    return list(cases.values())


# -- host-local as the range fills ---------------------------------------------------------------

def _fill(store: str, subnet_base: int, size: int, fraction: float) -> None:
    """Reserve ``fraction`` of the range's addresses (a fixed random pick), as records on disk."""
    import ipaddress

    os.makedirs(store, exist_ok=True)
    usable = list(range(2, size - 1))  # .1 is the gateway, the last is broadcast
    picked = random.Random(42).sample(usable, int(len(usable) * fraction))
    for offset in picked:
        ip = str(ipaddress.IPv4Address(subnet_base + offset))
        with open(os.path.join(store, ip), "wb") as fh:
            fh.write(f"filler-{offset}\r\neth0".encode())


def host_local(go: Go, ours: Ours, work: str, rounds: int, prefix: int = 20) -> list[Case]:
    """ADD then DEL (fill level kept) per sample: Go exec, our launcher exec, ours in a warm process.

    Also records how long our warm ADD holds the store lock."""
    import ipaddress

    import cni_plugins_builtin.host_local.plugin as host_local_plugin
    from cni_plugins_builtin.host_local import store as store_mod
    from cnicore import skel
    from cnicore.host import PluginHost

    host = PluginHost(host_local_plugin, "host-local")
    holds: list[float] = []
    enter, leave = store_mod.DiskStore.__enter__, store_mod.DiskStore.__exit__

    def timed_enter(self: Any) -> Any:
        value = enter(self)
        self._bench_locked = time.perf_counter()
        return value

    def timed_exit(self: Any, *exc: object) -> None:
        leave(self, *exc)
        holds.append(time.perf_counter() - self._bench_locked)

    out: list[Case] = []
    size = 1 << (32 - prefix)
    for fraction in (0.0, 0.5, 0.99):
        label = f"ADD at {int(fraction * 100)} % of a /{prefix}"
        exec_case = Case("host-local", f"{label}, exec")
        warm_case = Case("host-local", f"{label}, ours warm", "Go side: whole Go process")
        bases = {"go": int(ipaddress.IPv4Address("10.250.0.0")), "ours": int(ipaddress.IPv4Address("10.251.0.0")),
                 "warm": int(ipaddress.IPv4Address("10.252.0.0"))}
        confs = {}
        for kind, base in bases.items():
            data = os.path.join(work, f"hl-{kind}-{fraction}")
            _fill(os.path.join(data, f"hl-{kind}"), base, size, fraction)
            confs[kind] = json.dumps({"cniVersion": "1.0.0", "name": f"hl-{kind}", "type": "bridge",
                                      "ipam": {"type": "host-local", "dataDir": data,
                                               "subnet": f"{ipaddress.IPv4Address(base)}/{prefix}"}}).encode()
        store_mod.DiskStore.__enter__, store_mod.DiskStore.__exit__ = timed_enter, timed_exit  # type: ignore
        try:
            for index in range(rounds + 1):
                for kind in ("go", "ours", "warm"):
                    for verb in ("ADD", "DEL"):
                        env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"hl-{index}", CNI_NETNS="/x",
                                        CNI_IFNAME="eth0", CNI_ARGS="", CNI_PATH=ours.bin_dir)
                        if kind == "warm":
                            start = time.perf_counter()
                            code, body, err = skel.run(host, env, confs[kind])
                            seconds = time.perf_counter() - start
                            if code != 0:
                                raise RuntimeError(f"host-local {verb}: {body!r}")
                        else:
                            binary = os.path.join(go.bin_dir if kind == "go" else ours.bin_dir, "host-local")
                            seconds = run_exec([binary], env, confs[kind])[0]
                        if verb == "ADD" and index > 0:  # the first ADD reads a store it never saw
                            if kind == "warm":
                                warm_case.add("ours", seconds)
                            else:
                                exec_case.add(kind, seconds)
                        if kind == "go" and verb == "ADD" and index > 0:
                            warm_case.add("go", seconds)
        finally:
            store_mod.DiskStore.__enter__, store_mod.DiskStore.__exit__ = enter, leave  # type: ignore
        warm_case.extra["ours_lock_hold_ms_median"] = sorted(holds)[len(holds) // 2] * 1000 if holds else None
        holds.clear()
        out += [exec_case, warm_case]
    return out


# -- concurrency ---------------------------------------------------------------------------------

def concurrent(sandbox: Any, go: Go, ours: Ours, work: str, count: int, batches: int = 3) -> list[Case]:
    """``count`` chain ADDs at once on one network (one thread per container, each
    exec'ing the plugins through cnicore.libcni), then ``count`` DELs; wall time of
    each batch, Go's and ours alternating batch by batch. No address may be handed
    out twice."""
    from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_dict

    cases = {verb: Case("concurrent", f"{count} chain {verb}s, wall") for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    for batch in range(batches):
        for side in ("go", "ours"):
            cni = CNIConfig([dirs[side]], cache_dir=os.path.join(work, side, "cache-concurrent"))
            conf_list = conf_list_from_dict(conflist(side, work))
            ctrs = [sandbox.container() for _ in range(count)]
            barrier = threading.Barrier(count)

            def one(verb: str, index: int) -> Any:
                # Pool threads inherit the sandbox's host namespace from this thread; make sure.
                from cnicore.testing import MACHINE_NETNS_INODE

                if os.stat("/proc/thread-self/ns/net").st_ino == MACHINE_NETNS_INODE:
                    raise RuntimeError("refusing to run plugins in the machine's network namespace")
                rt = RuntimeConf(f"bench-conc-{batch}-{index}", ctrs[index].path, "eth0")
                barrier.wait()
                if verb == "ADD":
                    return cni.add_network_list(conf_list, rt)
                cni.del_network_list(conf_list, rt)
                return None

            for verb in ("ADD", "DEL"):
                with ThreadPoolExecutor(count) as pool:
                    start = time.perf_counter()
                    results = list(pool.map(lambda i: one(verb, i), range(count)))
                    cases[verb].add(side, time.perf_counter() - start)
                if verb == "ADD":
                    addresses = [ip.address for result in results for ip in result.ips]  # type: ignore[union-attr]
                    if len(set(addresses)) != count:
                        raise RuntimeError(f"{side}: duplicate or missing addresses: {sorted(addresses)}")
                    cases[verb].extra[f"{side}_distinct_addresses"] = len(set(addresses))
            for ctr in ctrs:
                ctr.remove()
    return list(cases.values())


# -- a third-party main plugin ------------------------------------------------------------------

PTP_SUBNETS = {"go": "10.245.0.0/16", "ours": "10.246.0.0/16"}


def third_party_main(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int, plugin_type: str) -> list[Case]:
    """ADD then DEL, IPv4, of a main plugin scaffolded from cnicore's main example
    (``cnitool new-plugin --kind main``: a ptp-like veth plugin written on the public toolkit,
    installed like any third-party project) against Go's ptp; each side with its own
    host-local (ours: our launcher, run in-process by the plugin). Each round a fresh container."""
    if not os.path.exists(os.path.join(ours.bin_dir, plugin_type)):
        return [_skipped("third-party main plugin", f"no {plugin_type} launcher in {ours.bin_dir} (the bench "
                                                    "scaffolds one into its own venv; --short needs the example "
                                                    "installed, as scripts/dev does)")]
    note = f"ours: {plugin_type}, the main example (cnitool new-plugin --kind main); Go: ptp; host-local IPAM"
    cases = {verb: Case("third-party main plugin", f"{verb}, IPv4", note) for verb in ("ADD+DEL", "ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    types = {"go": "ptp", "ours": plugin_type}
    confs = {side: json.dumps({"cniVersion": "1.0.0", "name": f"bench-ptp-{side}", "type": types[side],
                               "ipam": {"type": "host-local", "subnet": PTP_SUBNETS[side],
                                        "dataDir": os.path.join(work, side, "ptp-ipam")}}).encode()
             for side in ("go", "ours")}
    for index in range(rounds + 1):
        for side in ("go", "ours"):
            ctr = sandbox.container()
            total = 0.0
            for verb in ("ADD", "DEL"):
                env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-ptp-{index}", CNI_NETNS=ctr.path,
                                CNI_IFNAME="eth0", CNI_ARGS="", CNI_PATH=dirs[side])
                seconds = run_exec([os.path.join(dirs[side], types[side])], env, confs[side])[0]
                total += seconds
                if index > 0:  # the first round creates the stores and warms the page cache
                    cases[verb].add(side, seconds)
            if index > 0:
                cases["ADD+DEL"].add(side, total)
            ctr.remove()
    return list(cases.values())


# -- the warm server -------------------------------------------------------------------------------

def ptp_static(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """ptp (+ host-local, IPv4, ipMasq) ADD and DEL in a fresh container, and static
    ADD and DEL, one exec each: Go's binaries against our launchers. IPv4 only: with
    IPv6 both sides wait ~1.5 s for duplicate address detection, which hides the work."""
    cases = {name: Case("ptp and static", name) for name in ("ptp ADD", "ptp DEL", "static ADD", "static DEL")}
    dirs = bin_dirs(go, ours)
    subnets = {"go": "10.243.0.0/16", "ours": "10.244.0.0/16"}
    static = json.dumps({"cniVersion": "1.0.0", "name": "bench-static", "type": "static", "ipam": {
        "type": "static", "addresses": [{"address": "10.245.0.5/24", "gateway": "10.245.0.1"},
                                        {"address": "fd45::5/64", "gateway": "fd45::1"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.245.0.1"]}}}).encode()
    for index in range(rounds):
        for side in ("go", "ours"):
            conf = json.dumps({"cniVersion": "1.0.0", "name": f"bench-ptp-{side}", "type": "ptp", "ipMasq": True,
                               "ipam": {"type": "host-local", "dataDir": os.path.join(work, side, "ptp-ipam"),
                                        "ranges": [[{"subnet": subnets[side]}]],
                                        "routes": [{"dst": "0.0.0.0/0"}]}}).encode()
            ctr = sandbox.container()
            for verb in ("ADD", "DEL"):
                env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-ptp-{index}", CNI_NETNS=ctr.path,
                                CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                cases[f"ptp {verb}"].add(side, run_exec([os.path.join(dirs[side], "ptp")], env, conf)[0])
                cases[f"static {verb}"].add(side, run_exec([os.path.join(dirs[side], "static")], env, static)[0])
            ctr.remove()
    return list(cases.values())


def macvlan(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """macvlan (bridge mode, + host-local, IPv4) ADD and DEL in a fresh container, one
    exec each, on a veth end of the bench's host namespace as the master: Go's binary
    against our launcher. (ipvlan and vlan need a kernel this machine lacks: the guest.)"""
    from cnicore.netlink import Netlink

    cases = {verb: Case("macvlan", f"macvlan {verb}") for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    with Netlink() as nl:  # in the bench's host namespace (run.py calls the sections there)
        try:
            nl.link("bmv0")
        except LookupError:
            nl.add_veth("bmv0", "bmv0p")
            nl.set_up("bmv0")
            nl.set_up("bmv0p")
    subnets = {"go": "10.246.0.0/16", "ours": "10.247.0.0/16"}
    for index in range(rounds):
        for side in ("go", "ours"):
            conf = json.dumps({"cniVersion": "1.0.0", "name": f"bench-macvlan-{side}", "type": "macvlan",
                               "master": "bmv0", "mode": "bridge",
                               "ipam": {"type": "host-local", "dataDir": os.path.join(work, side, "macvlan-ipam"),
                                        "ranges": [[{"subnet": subnets[side]}]],
                                        "routes": [{"dst": "0.0.0.0/0"}]}}).encode()
            ctr = sandbox.container()
            for verb in ("ADD", "DEL"):
                env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-macvlan-{index}", CNI_NETNS=ctr.path,
                                CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                cases[verb].add(side, run_exec([os.path.join(dirs[side], "macvlan")], env, conf)[0])
            ctr.remove()
    return list(cases.values())


def host_device(sandbox: Any, go: Go, ours: Ours, rounds: int) -> list[Case]:
    """host-device ADD then DEL (no IPAM), one exec each: a veth end of the private host
    moved into a fresh container and back (the rename dance through a temporary namespace
    on our side and on current Go's; Debian's 1.1.1 renames inside the container)."""
    from cnicore.netlink import Netlink

    cases = {verb: Case("host-device", f"host-device {verb}") for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench-hd", "type": "host-device",
                       "device": "benchhd0"}).encode()
    for index in range(rounds):
        for side in ("go", "ours"):
            with Netlink() as nl:  # this thread is in the sandbox's private host
                nl.add_veth("benchhd0", "benchhd0p")
                nl.set_up("benchhd0")
            ctr = sandbox.container()
            for verb in ("ADD", "DEL"):
                env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-hd-{index}", CNI_NETNS=ctr.path,
                                CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                cases[verb].add(side, run_exec([os.path.join(dirs[side], "host-device")], env, conf)[0])
            ctr.remove()
            with Netlink() as nl:
                nl.delete_link("benchhd0")
    return list(cases.values())


def podman(go: Go, ours: Ours, rounds: int) -> list[Case]:
    """podman 4.3 (Debian's, CNI backend) on Go's plugins and on ours, each in its own throwaway
    environment and private host (tests/helpers/clients.py, the client tests' harness): ``podman
    run -d -p`` on a ``podman network create`` network (bridge + host-local + portmap + firewall +
    tuning ADD inside it) and ``podman rm -f`` (their DEL), interleaved round by round."""
    tests_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from helpers.clients import podman_at

    run = Case("podman", "podman run -d -p 8080:80 (a network of bridge, portmap, firewall, tuning)")
    remove = Case("podman", "podman rm -f (the same chain's DEL)")
    with contextlib.ExitStack() as stack:
        envs = {}
        for side, bin_dir in bin_dirs(go, ours).items():
            work = tempfile.mkdtemp(prefix=f"cnicore-bench-podman-{side}-")
            stack.callback(shutil.rmtree, work, True)
            envs[side] = stack.enter_context(podman_at(bin_dir, work, "cnitest-bench"))
            envs[side].run("network", "create", "benchnet")
        for i in range(rounds + 1):  # the first round warms podman's own caches: not counted
            for side in (("go", "ours") if i % 2 else ("ours", "go")):
                env, name = envs[side], f"bench{i}"
                start = time.perf_counter()
                cid = env.run(*env.publish_args(name, 8080, "benchnet")).strip()
                if i:
                    run.add(side, time.perf_counter() - start)
                env.track(cid)
                start = time.perf_counter()
                env.run("rm", "-f", "-t", "0", name)
                if i:
                    remove.add(side, time.perf_counter() - start)
    return [run, remove]


def server_footprint(pid: int, workers: list[int], idle_seconds: float) -> list[Case]:
    """The warm server's own cost: the parent's RSS, an idle worker's private pages
    (what each worker adds), and CPU used by the whole server while nothing happens."""

    def status_kib(p: int) -> int:
        with open(f"/proc/{p}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    def private_kib(p: int) -> int:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                return sum(int(line.split()[1]) for line in fh
                           if line.startswith(("Private_Clean", "Private_Dirty")))
        except FileNotFoundError:  # exited meanwhile
            return 0

    def ticks() -> int:
        """The parent's and live workers' CPU; a worker that exited meanwhile (idle exit) was
        reaped by the parent, whose children's counters now hold its ticks."""
        total = 0
        for p in [pid, *workers]:
            try:
                total += cpu_ticks(p, children=True)
            except FileNotFoundError:
                pass
        return total

    before = ticks()
    time.sleep(idle_seconds)
    idle = ticks() - before
    case = Case("warm server", "footprint")
    case.extra.update(parent_rss_mb=round(status_kib(pid) / 1024, 1), idle_workers=len(workers),
                      idle_worker_private_mb=round(max((private_kib(w) for w in workers), default=0) / 1024, 1),
                      idle_cpu_ticks=idle, idle_seconds=idle_seconds)
    return [case]


def _skipped(section: str, why: str) -> Case:
    case = Case(section, "skipped")
    case.extra["skipped"] = why
    return case


def sbr(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """sbr ADD and DEL on a container's net1 (a veth with its address and subnet route, as a
    main plugin leaves it), one exec each: Go's binary against our launcher."""
    from cnicore.netlink import Netlink

    cases = {name: Case("sbr", name) for name in ("sbr ADD", "sbr DEL")}
    dirs = bin_dirs(go, ours)

    def net1() -> None:
        with Netlink() as nl:
            nl.add_veth("net1", "net1p")
            nl.add_address(nl.link("net1"), "10.246.0.2/24")
            nl.set_up(nl.link("net1"))
            nl.set_up(nl.link("net1p"))

    for index in range(rounds):
        for side in ("go", "ours"):
            ctr = sandbox.container()
            ctr.do(net1)
            conf = json.dumps({"cniVersion": "1.0.0", "name": "bench-sbr", "type": "sbr", "prevResult": {
                "cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": ctr.path}],
                "ips": [{"interface": 0, "address": "10.246.0.2/24", "gateway": "10.246.0.1"}]}}).encode()
            for verb in ("ADD", "DEL"):
                env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-sbr-{index}", CNI_NETNS=ctr.path,
                                CNI_IFNAME="net1", CNI_PATH=dirs[side], CNI_ARGS="")
                cases[f"sbr {verb}"].add(side, run_exec([os.path.join(dirs[side], "sbr")], env, conf)[0])
            ctr.remove()
    return list(cases.values())


#: The link plugins whose kernel types this machine may lack (the ``guest`` section runs
#: them on Debian's stock kernel), and what each needs.
LINK_PLUGINS = {"ipvlan": "ipvlan", "vlan": "vlan", "vrf": "vrf", "dummy": "dummy"}


def links(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """ipvlan (l2), vlan (id 100), dummy (each + host-local, IPv4) and vrf (chained on a
    container's eth0 with an address and a route: creates the VRF, moves the route) ADD
    and DEL in a fresh container, one exec each, Go's binary against our launcher.
    Debian's 1.1.1 ships no dummy: ours alone there. On a kernel without these link types
    (this machine's): skipped here, run by the ``guest`` section."""
    from cnicore.netlink import Netlink
    from cnicore.testing import kernel_has, run_in

    missing = [kind for kind in LINK_PLUGINS.values() if not kernel_has(kind)]
    if missing:
        return [_skipped("links", f"this kernel lacks {', '.join(missing)}: the guest section runs them")]
    cases = {(plugin, verb): Case(plugin, f"{plugin} {verb}",
                                  "Debian's 1.1.1 has no dummy: ours alone" if plugin == "dummy" else "")
             for plugin in LINK_PLUGINS for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    with Netlink() as nl:  # the master, in the bench's host namespace
        try:
            nl.link("blk0")
        except LookupError:
            nl.add_veth("blk0", "blk0p")
            nl.set_up("blk0")
            nl.set_up("blk0p")

    def ipam(side: str, plugin: str, subnet: str) -> dict[str, Any]:
        return {"type": "host-local", "dataDir": os.path.join(work, side, f"{plugin}-ipam"),
                "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}

    def conf(side: str, plugin: str, ctr: Any) -> dict[str, Any]:
        base = {"cniVersion": "1.0.0", "name": f"bench-{plugin}-{side}", "type": plugin}
        if plugin == "ipvlan":
            return dict(base, master="blk0", mode="l2", ipam=ipam(side, plugin, "10.248.0.0/16"))
        if plugin == "vlan":
            return dict(base, master="blk0", vlanId=100, ipam=ipam(side, plugin, "10.249.0.0/16"))
        if plugin == "dummy":
            return dict(base, ipam=ipam(side, plugin, "10.250.0.0/16"))
        for cmd in ("link add eth0 type dummy", "link set eth0 up", "addr add 10.251.0.5/24 dev eth0",
                    "route add 10.99.0.0/16 via 10.251.0.1 dev eth0"):
            run_in(ctr, "ip", *cmd.split())
        return dict(base, vrfname="red", prevResult={
            "cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
            "ips": [{"address": "10.251.0.5/24", "interface": 0}]})

    for index in range(rounds):
        for plugin in LINK_PLUGINS:
            for side in ("go", "ours"):
                binary = os.path.join(dirs[side], plugin)
                if not os.access(binary, os.X_OK):
                    continue
                ctr = sandbox.container()
                body = json.dumps(conf(side, plugin, ctr)).encode()
                for verb in ("ADD", "DEL"):
                    env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-{plugin}-{index}", CNI_NETNS=ctr.path,
                                    CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                    cases[(plugin, verb)].add(side, run_exec([binary], env, body)[0])
                ctr.remove()
    return list(cases.values())


def dhcp(sandbox: Any, go: Go, ours: Ours, work: str, rounds: int) -> list[Case]:
    """dhcp (the IPAM plugin exec'd as the runtime's main plugin would) ADD and DEL for a
    container whose eth0 is on a bridge served by dnsmasq (no ping check), each side with
    its own daemon (Go's ``dhcp daemon``; ours, ``python -m cni_plugins_builtin.dhcp
    daemon``), one exec each: the plugin's exec, the RPC and the daemon's DHCP exchange
    (DISCOVER/OFFER/REQUEST/ACK on ADD, RELEASE on DEL)."""
    import signal
    import subprocess
    import time

    from cnicore.netlink import Netlink

    cases = {verb: Case("dhcp", f"dhcp {verb}") for verb in ("ADD", "DEL")}
    dirs = bin_dirs(go, ours)
    import tempfile

    state = tempfile.mkdtemp(prefix="dhcp-", dir=work)  # each pass its own: Go's daemon leaves its socket
    with Netlink() as nl:  # the bench's host namespace (run.py calls the sections there)
        nl.add_bridge("bdh0")
        nl.add_address(nl.link("bdh0"), "10.78.0.1/24")
        nl.set_up(nl.link("bdh0"))
    log = os.path.join(state, "dnsmasq.log")
    procs = [subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--interface=bdh0",
         "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
         "--dhcp-range=10.78.0.50,10.78.0.250,255.255.255.0,2m",
         f"--dhcp-leasefile={state}/leases", f"--pid-file={state}/dnsmasq.pid", f"--log-facility={log}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    sockets = {side: os.path.join(state, f"{side}.sock") for side in ("go", "ours")}
    for side, argv in (("go", [os.path.join(dirs["go"], "dhcp"), "daemon"]),
                       ("ours", [ours.python, "-m", "cni_plugins_builtin.dhcp", "daemon"])):
        with open(os.path.join(state, f"{side}-daemon.log"), "wb") as out:
            procs.append(subprocess.Popen([*argv, "-socketpath", sockets[side]], stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 30
        while not (all(os.path.exists(s) for s in sockets.values()) and os.path.exists(log)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                return [_skipped("dhcp", "dnsmasq or a daemon did not start")]
            time.sleep(0.1)
        host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for index in range(rounds):
                for side in ("go", "ours"):
                    ctr = sandbox.container()
                    tag = f"bd{index % 100}{side[0]}"

                    def make(tag: str = tag) -> None:
                        with Netlink() as nl:
                            nl.add_veth("eth0", tag, peer_netns_fd=host_fd)

                    ctr.do(make)
                    with Netlink() as nl:
                        nl.set_link(nl.link(tag), master=nl.link("bdh0").index, up=True)
                    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench-dhcp", "type": "dhcp",
                                       "ipam": {"type": "dhcp", "daemonSocketPath": sockets[side]}}).encode()
                    for verb in ("ADD", "DEL"):
                        env = clean_env(CNI_COMMAND=verb, CNI_CONTAINERID=f"bench-dhcp-{side}-{index}",
                                        CNI_NETNS=ctr.path, CNI_IFNAME="eth0", CNI_PATH=dirs[side], CNI_ARGS="")
                        cases[verb].add(side, run_exec([os.path.join(dirs[side], "dhcp")], env, conf)[0])
                    ctr.remove()
        finally:
            os.close(host_fd)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        with Netlink() as nl:
            nl.delete_link("bdh0")
    return list(cases.values())
