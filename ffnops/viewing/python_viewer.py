"""Neuroglancer's own Python viewer: the bundled client, served offline from this process.

The ``neuroglancer`` package ships a build of the client that talks to a Python server; it needs
no internet, so ``ffnops view`` always offers it beside the public-client link.
"""

from __future__ import annotations

import neuroglancer
import neuroglancer.server


def open_viewer(state: neuroglancer.ViewerState, host: str = "127.0.0.1") -> neuroglancer.Viewer:
    """Starts (once per process) neuroglancer's server on ``host`` and shows ``state``."""
    if not neuroglancer.server.is_server_running():
        neuroglancer.set_server_bind_address(host, 0)
    viewer = neuroglancer.Viewer()
    viewer.set_state(state)
    return viewer
