"""The compiled part of the package: the WAF's per-value work (JSON fields, features, transforms,
hyperscan scans), linked to libhs.

Everything else is declared in pyproject.toml. Building needs a C compiler and the Hyperscan
headers and library (Debian/Ubuntu: `apt-get install libhyperscan-dev`).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "failsmall.engine._native",
            sources=[
                "src/failsmall/engine/_native.c",
                "src/failsmall/engine/_memo.c",
                "src/failsmall/engine/_head.c",
            ],
            depends=["src/failsmall/engine/_memo.h", "src/failsmall/engine/_head.h"],
            libraries=["hs"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
