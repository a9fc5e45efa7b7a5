"""Speech-agnostic reproducibility machinery: hashing, atomic files, tensor state, determinism, hooks.

Nothing in this subpackage knows about audio or speech; it can serve any Kedro + PyTorch project.
"""
