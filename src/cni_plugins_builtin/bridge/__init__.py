"""bridge: attach containers to a Linux bridge through veth pairs (see plugin.py)."""
