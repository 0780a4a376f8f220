"""Only for the optional C extensions; everything else is declared in pyproject.toml.

spamkit.tokenizer._fast speeds up word splitting and hashing (docs/decisions/0006),
spamkit.message._scans the parser's tag, URL and header scans (docs/decisions/0009). Both are
optional: without a C compiler the install still succeeds and spamkit uses its Python
code, which gives the same tokens and keys, only slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("spamkit.tokenizer._fast", ["spamkit/tokenizer/_fast.c"],
              extra_compile_args=["-O2"], libraries=["m"], optional=True),
    Extension("spamkit.message._scans", ["spamkit/message/_scans.c"],
              extra_compile_args=["-O2"], optional=True),
])
