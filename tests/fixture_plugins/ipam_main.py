"""A tiny main plugin for tests: every verb is its IPAM's answer (via ``cnicore.ipam.run_ipam``)."""

from __future__ import annotations

from cnicore.plugin import hookimpl


@hookimpl
def cni_add(request):
    from cnicore.ipam import run_ipam

    return run_ipam(request)


@hookimpl
def cni_check(request):
    from cnicore.ipam import run_ipam

    run_ipam(request)


@hookimpl
def cni_del(request):
    from cnicore.ipam import run_ipam

    run_ipam(request)
