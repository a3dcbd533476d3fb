"""portmap: publish container ports on the host (iptables or nftables NAT rules)."""
