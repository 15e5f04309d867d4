"""Volume URIs: ``scheme://path#fragment``, the one string a user gives to name a volume.

The core only splits a URI; what the path and fragment mean is up to the plugin that serves the
scheme (``h5://file.h5#dataset``, ``n5:///data/vol.n5/raw``, ``precomputed://http://host/seg``).
A string without a scheme (``file.h5:dataset``, Google's form) has the empty scheme ``""``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


@dataclass(frozen=True)
class VolumeURI:
    """A URI split into scheme, path and fragment; ``raw`` is the string as given."""

    raw: str
    scheme: str
    path: str
    fragment: str

    @classmethod
    def parse(cls, uri: str) -> VolumeURI:
        uri = str(uri).strip()
        match = _SCHEME.match(uri)
        scheme = match.group(1).lower() if match else ""
        rest = uri[match.end() :] if match else uri
        path, _, fragment = rest.partition("#")
        return cls(raw=uri, scheme=scheme, path=path, fragment=fragment)

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class Scheme:
    """A URI scheme a plugin serves, for dispatch, ``ffnops plugins`` and error messages."""

    name: str
    description: str
    read: bool = True
    write: bool = False
    example: str = ""
