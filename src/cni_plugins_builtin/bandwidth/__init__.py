"""bandwidth: a meta plugin that limits a chained container's traffic with tc token bucket filters."""
