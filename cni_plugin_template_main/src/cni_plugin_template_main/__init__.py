"""cni-plugin-template-main: the ``template-ptp`` CNI plugin for cnicore.

The plugin itself is :mod:`cni_plugin_template_main.plugin`, registered under
the ``cnicore.plugins`` entry-point group. This package imports nothing, so a
launcher pays only for the plugin module.
"""

__version__ = "0.1.0"
