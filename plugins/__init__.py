"""ffnops's built-in plugins, registered through the ``ffnops`` entry-point group like any other."""
