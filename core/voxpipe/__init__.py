"""voxpipe: reliable movement of contact-center voice audio.

The public surface for plugin authors is re-exported here:

- :data:`hookimpl` marks a plugin's hook implementations (see :mod:`voxpipe.hookspecs`);
- :mod:`voxpipe.components` holds the base classes a component derives from;
- :mod:`voxpipe.settings` holds the settings base class and field helper.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations in plugin modules: ``@hookimpl def register_sinks(register): ...``
hookimpl = pluggy.HookimplMarker("voxpipe")

__all__ = ["__version__", "hookimpl"]
