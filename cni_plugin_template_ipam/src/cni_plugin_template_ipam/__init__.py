"""cni-plugin-template-ipam: the ``template-ipam`` CNI IPAM plugin for cnicore.

The plugin itself is :mod:`cni_plugin_template_ipam.plugin` (its store:
:mod:`cni_plugin_template_ipam.store`), registered under the
``cnicore.plugins`` entry-point group. This package imports nothing, so a
launcher pays only for the plugin module.
"""

__version__ = "0.1.0"
