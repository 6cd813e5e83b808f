"""Inflate an InterHand2.6M root's annotations to real-release sizes, for memory and time benchmarks.

Copies a (small, synthetic) root's annotation files and pads them with filler entries in the real
records' format: images (and their annotations) whose files do not exist, their frames' joints and
MANO parameters, and their cameras. Filler never matches a selection of the original entries: it lives
in sequences named ``9999_filler_*`` (in the original captures too), at frame indices from
``FILLER_FRAME0`` on. The original entries sit in the middle of each file, so a reader cannot stop
early. Files are written entry by entry: memory stays small whatever the size.

Real sizes (InterHand2.6M v1.0, train): the 5 fps ``data.json`` holds 1,361,062 images (834 MB), the
30 fps one is 3.7 GB; the 5 fps ``MANO_NeuralAnnot.json`` has 18,718 frame entries (about 73 views
per frame), which sets the number of filler frames per filler image.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

FIVE_FPS_TRAIN_IMAGES = 1_361_062
FIVE_FPS_TRAIN_FRAMES = 18_718
FIVE_FPS_DATA_BYTES = 834_000_000
THIRTY_FPS_DATA_BYTES = 3_700_000_000
VIEWS_PER_FRAME = FIVE_FPS_TRAIN_IMAGES / FIVE_FPS_TRAIN_FRAMES
FILLER_FRAME0 = 100_000
FILLER_SEQS = 10  # filler sequences per capture

_NAMES = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")


def _f(x: float) -> str:
    return repr(round(x, 9))


def _filler_cams(n: int) -> list[str]:
    return [f"5{k:05d}" for k in range(n)]


def _filler_image(iid: int, capture: int, seq: str, cam: str, fidx: int) -> str:
    return (f'{{"id": {iid}, "file_name": "Capture{capture}/{seq}/cam{cam}/image{fidx:04d}.jpg", "width": 334, '
            f'"height": 512, "capture": {capture}, "subject": {capture + 1}, "seq_name": "{seq}", "camera": "{cam}", '
            f'"frame_idx": {fidx}}}')


_VALID = json.dumps([[1]] * 42)


def _filler_ann(iid: int) -> str:
    x, y = 100.0 + (iid % 97) * 1.234567, 150.0 + (iid % 89) * 2.345678
    return (f'{{"id": {iid}, "image_id": {iid}, "bbox": [{_f(x)}, {_f(y)}, {_f(120.123456789)}, '
            f'{_f(140.987654321)}], "joint_valid": {_VALID}, "hand_type": "interacting", "hand_type_valid": 1}}')


def _filler_joint(k: int) -> str:
    coords = ", ".join(f"[{_f(-50.0 + 0.731 * j + k % 7)}, {_f(20.0 + 1.137 * j)}, {_f(980.0 + 0.419 * j)}]"
                       for j in range(42))
    return (f'{{"world_coord": [{coords}], "joint_valid": {json.dumps([[True]] * 42)}, '
            f'"hand_type": "interacting", "hand_type_valid": true}}')


def _filler_mano(k: int) -> str:
    def side(s: float) -> str:
        pose = ", ".join(_f(s * 0.0123456789 * ((j * 7 + k) % 13 - 6)) for j in range(48))
        shape = ", ".join(_f(0.1234567891 * ((j + k) % 5 - 2)) for j in range(10))
        return f'{{"pose": [{pose}], "shape": [{shape}], "trans": [{_f(0.0123)}, {_f(-0.0456)}, {_f(0.987654)}]}}'

    return f'{{"right": {side(1.0)}, "left": {side(-1.0)}}}'


def _filler_camera_blocks(cams: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
    for k, cam in enumerate(cams):
        out["campos"][cam] = f"[{_f(100.0 + k)}, {_f(-200.0 + k)}, {_f(900.0)}]"
        out["camrot"][cam] = "[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]"
        out["focal"][cam] = f"[{_f(1260.5 + k * 0.01)}, {_f(1261.5)}]"
        out["princpt"][cam] = f"[{_f(167.0)}, {_f(256.0)}]"
    return out


def inflate_interhand(src: str | Path, dst: str | Path, images: int, split: str = "train", captures: int = 10,
                      views_per_frame: float = VIEWS_PER_FRAME) -> dict:
    """Write ``dst``: ``src``'s InterHand root with its annotations padded to ``images`` images in all.

    ``dst/images`` is a symlink to ``src/images``; ``skeleton.txt`` and ``handcli_synth.json`` are copied.
    Returns {"images", "frames", "bytes": {file: size}}.
    """
    src, dst = Path(src), Path(dst)
    ann_src = src / "annotations" / split
    ann_dst = dst / "annotations" / split
    ann_dst.mkdir(parents=True)
    os.symlink((src / "images").resolve(), dst / "images")
    shutil.copy(src / "annotations" / "skeleton.txt", dst / "annotations" / "skeleton.txt")
    if (src / "handcli_synth.json").is_file():
        shutil.copy(src / "handcli_synth.json", dst / "handcli_synth.json")
    orig = {n: json.loads((ann_src / f"InterHand2.6M_{split}_{n}.json").read_text()) for n in _NAMES}
    n_orig = len(orig["data"]["images"])
    n_fill = max(images - n_orig, 0)
    n_cams = max(1, round(views_per_frame))
    n_frames = -(-n_fill // n_cams)
    cams = _filler_cams(n_cams)
    orig_caps = sorted(int(c) for c in orig["camera"])
    caps = sorted(set(orig_caps) | set(range(captures)))
    frames_per_cap = -(-n_frames // len(caps)) if n_frames else 0
    next_id = max((im["id"] for im in orig["data"]["images"]), default=-1) + 1

    def filler_frames():
        """(capture, seq, frame_idx, k) of every filler frame."""
        k = 0
        for c in caps:
            for j in range(frames_per_cap):
                if k >= n_frames:
                    return
                yield c, f"9999_filler_neutral_relaxed_{j % FILLER_SEQS}", FILLER_FRAME0 + j, k
                k += 1

    paths = {n: ann_dst / f"InterHand2.6M_{split}_{n}.json" for n in _NAMES}

    def write_list(f, originals, filler_iter):
        """Half the filler, the originals, the other half: the originals sit in the middle."""
        half = n_fill // 2
        first = True
        it = iter(filler_iter)
        for _, rec in zip(range(half), it):
            f.write(rec if first else ", " + rec)
            first = False
        for rec in originals:
            f.write(json.dumps(rec) if first else ", " + json.dumps(rec))
            first = False
        for rec in it:
            f.write(rec if first else ", " + rec)
            first = False

    def filler_images():
        iid = next_id
        for c, seq, fidx, _ in filler_frames():
            for cam in cams:
                if iid - next_id >= n_fill:
                    return
                yield iid, c, seq, cam, fidx
                iid += 1

    with open(paths["data"], "w") as f:
        f.write('{"images": [')
        write_list(f, orig["data"]["images"], (_filler_image(*a) for a in filler_images()))
        f.write('], "annotations": [')
        write_list(f, orig["data"]["annotations"], (_filler_ann(a[0]) for a in filler_images()))
        f.write("]}")

    for name, make in (("joint_3d", _filler_joint), ("MANO_NeuralAnnot", _filler_mano)):
        with open(paths[name], "w") as f:
            f.write("{")
            for ci, c in enumerate(caps):
                f.write(("" if ci == 0 else ", ") + f'"{c}": {{')
                first = True
                for key, entry in orig[name].get(str(c), {}).items():
                    f.write(("" if first else ", ") + f"{json.dumps(key)}: {json.dumps(entry)}")
                    first = False
                for cc, _, fidx, k in filler_frames():
                    if cc == c:
                        f.write(("" if first else ", ") + f'"{fidx}": {make(k)}')
                        first = False
                f.write("}")
            f.write("}")

    blocks = _filler_camera_blocks(cams)
    with open(paths["camera"], "w") as f:
        f.write("{")
        for ci, c in enumerate(caps):
            f.write(("" if ci == 0 else ", ") + f'"{c}": {{')
            o = orig["camera"].get(str(c), {})
            for bi, b in enumerate(("campos", "camrot", "focal", "princpt")):
                items = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in o.get(b, {}).items()]
                items += [f'"{cam}": {v}' for cam, v in blocks[b].items()]
                f.write(("" if bi == 0 else ", ") + f'"{b}": {{' + ", ".join(items) + "}")
            f.write("}")
        f.write("}")
    return {"images": n_orig + n_fill, "frames": n_frames + sum(len(v) for v in orig["joint_3d"].values()),
            "bytes": {n: p.stat().st_size for n, p in paths.items()}}
