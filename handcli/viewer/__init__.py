"""``handcli view``: a browser viewer for trained runs on viser.

- ``camera``: viser camera state <-> handcli's OpenCV ``K`` / ``world_to_cam``; the nearest cache camera.
- ``progressive``: a background render loop (reduced resolution while the camera moves, full once it rests).
- ``pose_edit``: finger flexion of a 21-joint skeleton (HandOcc's pose input).
- ``app``: the viser server and its per-browser GUI, written against the method contract
  (``handcli.methods.base``) so that it serves every method.
"""
