"""Only the optional C speed-ups live here; everything else is in pyproject.toml.

- `monbus.core._fastline` (core/_fastline.c): `monbus send`'s validation and grouping;
- `monbus.bridges.nagios._fastspool` (bridges/nagios/_fastspool.c): `monbus nagios spool`'s
  records of known checks;
- `monbus.bridges.collectd._fastdecode` (bridges/collectd/_fastdecode.c): the collectd
  network protocol's usual datagrams;
- `monbus.bridges.graphite._fastrates` (bridges/graphite/_fastrates.c): `monbus carbon
  --rates`' usual lines.

Each is optional: without a C compiler the install goes on and the Python path (the
reference, which each C module is tested against) does the same work more slowly.
"""
from setuptools import Extension, setup


def _ext(name: str, source: str) -> Extension:
    return Extension(name, [source], optional=True, extra_compile_args=["-O2"])


setup(ext_modules=[_ext("monbus.core._fastline", "core/_fastline.c"),
                   _ext("monbus.bridges.nagios._fastspool", "bridges/nagios/_fastspool.c"),
                   _ext("monbus.bridges.collectd._fastdecode", "bridges/collectd/_fastdecode.c"),
                   _ext("monbus.bridges.graphite._fastrates", "bridges/graphite/_fastrates.c")])
