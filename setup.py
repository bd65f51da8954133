"""The compiled fast path (src/statewall/_fastpath.c) and the live loop's pump for it
(src/statewall/live/_tunpump.c). Everything else is in pyproject.toml.

The extension is optional: without a C compiler statewall installs and runs on the Python path alone
(statewall.fastpath.AVAILABLE is then False and every packet takes statewall.engine's Python path).
"""

import os

from setuptools import Extension, setup

# io_uring batches of the pump's TUN writes (statewall.live._tunpump.uring) when liburing's header is
# there (Debian: liburing-dev, in the Makefile's packages); without it the pump writes with writev().
URING = os.path.exists("/usr/include/liburing.h")

setup(
    ext_modules=[
        Extension(
            "statewall._fastpath",
            ["src/statewall/_fastpath.c"],
            depends=["src/statewall/_fastpath_api.h"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        # The live loop's C pump for the fast path's packets (statewall.live.loop uses it if built).
        Extension(
            "statewall.live._tunpump",
            ["src/statewall/live/_tunpump.c"],
            depends=["src/statewall/_fastpath_api.h"],
            extra_compile_args=["-O2", "-Wall"],
            define_macros=[("STATEWALL_HAVE_LIBURING", "1")] if URING else [],
            libraries=["uring"] if URING else [],
            optional=True,
        ),
    ]
)
