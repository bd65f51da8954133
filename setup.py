"""The compiled fast path (src/statewall/_fastpath.c). Everything else is in pyproject.toml.

The extension is optional: without a C compiler statewall installs and runs on the Python path alone
(statewall.fastpath.AVAILABLE is then False and every packet takes statewall.engine's Python path).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "statewall._fastpath",
            ["src/statewall/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
