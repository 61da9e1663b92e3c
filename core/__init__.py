"""monbus core: the line codec, the ZeroMQ bus, the relay and the CLI every bridge uses."""
