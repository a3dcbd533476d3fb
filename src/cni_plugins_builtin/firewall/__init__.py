"""firewall: a meta plugin that lets a chained container's traffic through the host's FORWARD chain."""
