"""``handcli render --edit``: skeleton edits from the command line (parsing, bad input, the edited render)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import handcli


def test_parse_edits_reads_each_kind_and_fills_single_angles():
    from handcli.hand.pose_edit import parse_edits

    assert parse_edits([]) == {}
    e = parse_edits(["right:flex=0,60,60,60,60", "right:wrist=30,-10,45", "left:flex=20", "left:spread=10",
                     "right:flex=1,2,3,4,5"])  # a later value of the same side and kind replaces an earlier one
    assert e == {"right": {"flex": [1, 2, 3, 4, 5], "wrist": [30, -10, 45]},
                 "left": {"flex": [20] * 5, "spread": [10, 10, 0, 10, 10]}}


@pytest.mark.parametrize("text", ["right", "right:flex", "middle:flex=10", "right:bend=10", "right:flex=1,2",
                                  "right:wrist=30", "right:flex=a,b,c,d,e", "right:flex=nan", "right:wrist=0,0,720",
                                  "right:flex=1,,2,3,4"])
def test_parse_edits_names_the_bad_value(text):
    from handcli.errors import InputError
    from handcli.hand.pose_edit import parse_edits

    with pytest.raises(InputError) as e:
        parse_edits([text])
    assert e.value.field == "--edit" and repr(text) in str(e.value)


def test_render_edit_renders_the_edited_skeleton(occ_run, tiny_cache, tmp_path):
    import cv2

    from handcli.data.cache import Cache

    with Cache(tiny_cache) as c:
        one = next(f for f in range(c.num_frames) if set(c.frame(f).hands) == {"right"} and c.views_of_frame(f))
    common = ["--frames", str(one), "--views", "400002", "--device", "cpu"]
    r = handcli("render", occ_run, tiny_cache, "-o", tmp_path / "plain", *common)
    assert r.returncode == 0, r.stderr
    r = handcli("render", occ_run, tiny_cache, "-o", tmp_path / "zero", *common, "--edit", "right:flex=0")
    assert r.returncode == 0, r.stderr
    r = handcli("render", occ_run, tiny_cache, "-o", tmp_path / "bent", *common, "--edit", "right:flex=0,80,80,80,80",
                "--edit", "right:wrist=40,0,0")
    assert r.returncode == 0, r.stderr

    def opacity(folder):
        (png,) = sorted((folder / "opacity").glob("*.png"))
        return cv2.imread(str(png), cv2.IMREAD_UNCHANGED) > 127

    plain, zero, bent = opacity(tmp_path / "plain"), opacity(tmp_path / "zero"), opacity(tmp_path / "bent")
    assert plain.sum() > 50
    assert np.array_equal(zero, plain)  # a zero edit renders the run's own pose
    assert (bent ^ plain).sum() > 0.1 * plain.sum()  # bent fingers and wrist: another silhouette
    doc = json.loads((tmp_path / "bent" / "renders.json").read_text())
    assert doc["config"]["edits"] == {"right": {"flex": [0, 80, 80, 80, 80], "wrist": [40, 0, 0]}}


def test_render_edit_bad_input_exits_2_without_output(occ_run, tiny_cache, tmp_path):
    from handcli.data.cache import Cache

    with Cache(tiny_cache) as c:
        one = next(f for f in range(c.num_frames) if set(c.frame(f).hands) == {"right"} and c.views_of_frame(f))
    for args, words in ((["--edit", "right:flex=1,2"], ["--edit", "5 angles"]),
                        (["--frames", str(one), "--edit", "left:flex=30"], ["--edit", "no frame to render has a left"])):
        out = tmp_path / "bad"
        r = handcli("render", occ_run, tiny_cache, "-o", out, *args)
        assert r.returncode == 2 and all(w in r.stderr for w in words), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not out.exists() and r.stdout == ""


def test_render_edit_needs_a_skeleton_method(tmp_path, stub_method_run):
    from typer.testing import CliRunner

    from handcli.cli import app
    from handcli.errors import InputError

    run = stub_method_run
    res = CliRunner().invoke(app, ["render", str(run), str(tmp_path / "x.h5"), "-o", str(tmp_path / "out"),
                                   "--edit", "right:flex=30"])
    assert isinstance(res.exception, InputError) and "not driven by a skeleton" in str(res.exception)
    assert res.exception.field == "--edit" and not (tmp_path / "out").exists()
