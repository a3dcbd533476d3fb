"""dhcp: IPAM by DHCPv4, through a long-running client daemon, as the reference's
``plugins/ipam/dhcp``. Modules, one job each:

* :mod:`.packet` — DHCPv4 messages and options (RFC 2131/2132/3442), pure;
* :mod:`.client` — one lease's exchanges (DISCOVER/OFFER/REQUEST/ACK, RENEW,
  RELEASE) over a UDP socket made inside the container namespace and bound to
  the interface;
* :mod:`.gob` — Go's gob encoding (types, values, streams), pure;
* :mod:`.messages` — the RPC's types (net/rpc's headers, skel.CmdArgs,
  current.Result) in gob, and their conversion to CNI JSON, pure;
* :mod:`.rpc` — Go's net/rpc over HTTP on the unix socket: the plugin's call
  and the daemon's connection loop (the reference's wire, both ways);
* :mod:`.daemon` — ``python -m cni_plugins_builtin.dhcp daemon``: the unix-socket
  server that acquires, renews, releases and persists leases;
* :mod:`.plugin` — the IPAM hook implementations, which ask the daemon.

Nothing is imported here, so loading the plugin module stays cheap.
"""
