"""``handcli view``: a browser viewer for trained runs on viser.

- ``camera``: viser camera state <-> handcli's OpenCV ``K`` / ``world_to_cam``; the nearest cache camera.
- ``progressive``: a background render loop (reduced resolution while the camera moves, full once it rests).
- ``method_view``: what a browser asks of a trained run (renders under its settings, nearest cache view,
  meshes, skeletons, appearances), written against the method contract (``handcli.methods.base``) so that
  it serves every method; no server code.
- ``app``: the viser server and its per-browser GUI and render loop.
"""
