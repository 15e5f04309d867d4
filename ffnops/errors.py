"""Errors a user can act on.

Every error raised on bad input is an :class:`FfnopsError`: the CLI prints its message on one line
(which file, which key, what was expected) instead of a traceback from deep inside a library.
"""


class FfnopsError(Exception):
    """Base class of all errors caused by input a user can fix."""


class VolumeError(FfnopsError):
    """A volume could not be opened, read or written as asked (names the URI)."""


class UnknownSchemeError(VolumeError):
    """No installed plugin serves the URI's scheme."""


class MissingDatasetError(VolumeError):
    """The file exists and is readable, but holds no dataset of the name asked for."""


class VolumeExistsError(VolumeError):
    """The output exists and the caller did not ask to overwrite it."""


class PluginError(FfnopsError):
    """A plugin is broken or answered a hook with something unusable."""
