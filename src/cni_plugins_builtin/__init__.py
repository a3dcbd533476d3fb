"""Built-in CNI plugins, registered through the ``cnicore.plugins`` entry points
exactly like a third-party plugin. Imports nothing: the launcher of one plugin
loads only that plugin's module."""
