"""Hand models: real MANO (via smplx, read without chumpy) and the open hand model in MANO's format.

Modules: ``skeleton`` (joint orders, mirroring), ``mano_io`` (chumpy-free pickles), ``open_model`` (the
procedural hand), ``model`` (``HandModel``, one class for both), ``fit`` (fitting to 3D joints),
``pose_edit`` (finger flexion and spread and wrist turns of a 21-joint skeleton: the viewer's sliders, `render --edit`).
Nothing heavy is imported here.
"""
