"""An example fwbench plugin: the `numpy_plugin` adapter, registered through the entry-point group
'harness.adapters' in this package's pyproject.toml. Installed and exercised by
tests/harness/test_plugin.py; see docs/adapters.md.

Nothing heavy is imported here: fwbench imports `fwbench_plugin_example.adapter` only when the
adapter is asked for.
"""

__version__ = "0.1.0"
