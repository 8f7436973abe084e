"""Build the protobuf codec's C loops (servicenet/api/pb/_cpb.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still works and the codec runs its
pure-Python paths (slower). tests/api/test_pb_native.py fails under CI=true when it is missing.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "servicenet.api.pb._cpb",
            ["servicenet/api/pb/_cpb.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        ),
    ],
)
