"""Only the optional C speed-up lives here; everything else is in pyproject.toml.

`monbus.core._fastline` makes `monbus send` validate and group its input at C speed
(core/_fastline.c).  It is optional: without a C compiler the install goes on and
core/line.py uses its Python path, which gives the same result.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("monbus.core._fastline", ["core/_fastline.c"], optional=True,
                             extra_compile_args=["-O2"]),
                   Extension("monbus.bridges.collectd._fastdecode",
                             ["bridges/collectd/_fastdecode.c"], optional=True,
                             extra_compile_args=["-O2"])])
