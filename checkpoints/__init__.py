"""The shipped learned optimizers, as the package ``lopt.shipped_checkpoints``.

``pyproject.toml`` maps this folder onto that package, so that a wheel carries the optimizers'
directories as package data and ``lopt.shipped`` finds them with ``importlib.resources``, installed
or in an editable checkout alike. It holds no code.
"""
