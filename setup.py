# cffi's setuptools integration is only reachable through setup(): the rest lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/_build.py:ffibuilder"])
