"""tuning: a meta plugin that changes sysctls and link settings of a chained interface."""
