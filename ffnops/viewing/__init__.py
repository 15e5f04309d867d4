"""Looking at results in neuroglancer: viewer states, links, and a local read-only data server."""
