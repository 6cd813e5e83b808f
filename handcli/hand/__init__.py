"""Hand models: real MANO (via smplx, read without chumpy) and the open hand model in MANO's format.

Modules: ``skeleton`` (joint orders, mirroring), ``mano_io`` (chumpy-free pickles), ``open_model`` (the
procedural hand), ``model`` (``HandModel``, one class for both), ``fit`` (fitting to 3D joints).
Nothing heavy is imported here.
"""
