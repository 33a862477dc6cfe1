"""Builds the cffi extension (API mode) against libfencekit.a, building it with cargo first."""

from setuptools import setup

setup(cffi_modules=["fencekit/_build.py:ffibuilder"])
