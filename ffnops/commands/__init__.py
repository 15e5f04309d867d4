"""One module per CLI command, each with ``run(cfg)``; the config is ``conf/<command>.yaml``."""
