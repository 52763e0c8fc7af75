"""Build of the optional compiled module ``expost._rowops`` (everything else is in pyproject.toml).

The module speeds up the row pass of Eq 8 and Eq 26 (``src/expost/_rowops.c``). It is
optional: where no C compiler is at hand the build warns and goes on, and expost computes
the same results in numpy. ``EXPOST_REQUIRE_EXTENSION=1`` makes a failed build an error
(CI sets it, so that a broken compiler cannot hide behind the fallback).
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "expost._rowops",
            sources=["src/expost/_rowops.c"],
            optional=os.environ.get("EXPOST_REQUIRE_EXTENSION", "") != "1",
        )
    ]
)
