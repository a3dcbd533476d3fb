"""vrf: a chained (meta) plugin putting the container interface into a VRF.

A Python counterpart of the reference vrf plugin (``plugins/meta/vrf``). Modules:
:mod:`.vrf` (the VRF device and moving an interface into it, with its routes) and
:mod:`.plugin` (the hooks). Nothing is imported here, so loading the plugin stays cheap.
"""
