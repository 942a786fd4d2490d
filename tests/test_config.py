"""DataConfig: defaults, TOML loading, and errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coreaffect.cli import main
from coreaffect.config import AnnotationConfig, ClipConfig, DataConfig, FaceConfig, VideoConfig
from coreaffect.errors import CoreAffectError


def test_defaults_follow_the_paper():
    config = DataConfig()
    assert config.clips.length == 16
    assert config.faces.detector == "haar"


def test_round_trip_through_dict():
    config = DataConfig(faces=FaceConfig(margin=0.8), clips=ClipConfig(stride=4))
    assert DataConfig.from_dict(config.to_dict()) == config


def test_from_toml(tmp_path):
    path = tmp_path / "data.toml"
    path.write_text('[faces]\nmargin = 1.0\ndetect_every = 2\n\n[clips]\nstride = 4\n')
    config = DataConfig.from_toml(path)
    assert config.faces.margin == 1.0 and config.faces.detect_every == 2
    assert config.clips.stride == 4 and config.clips.length == 16
    # as Windows' Notepad saves it: a byte-order mark and CRLF line ends
    path.write_bytes(b"\xef\xbb\xbf[annotations]\r\ndelay = 0.5\r\n")
    assert DataConfig.from_toml(path).annotations.delay == 0.5


def test_a_relative_yunet_model_is_found_beside_the_file_that_names_it(tmp_path, monkeypatch):
    folder = tmp_path / "settings"
    folder.mkdir()
    path = folder / "data.toml"
    path.write_text('[faces]\ndetector = "yunet"\nyunet_model = "models/yunet.onnx"\n')
    monkeypatch.chdir(tmp_path)  # elsewhere than the file
    config = DataConfig.from_toml(Path("settings") / "data.toml")
    assert config.faces.yunet_model == str(folder.resolve() / "models" / "yunet.onnx")
    path.write_text(f'[faces]\ndetector = "yunet"\nyunet_model = "{tmp_path / "y.onnx"}"\n')
    assert DataConfig.from_toml(path).faces.yunet_model == str(tmp_path / "y.onnx")


def test_settings_a_file_leaves_out_come_from_the_base(tmp_path):
    path = tmp_path / "data.toml"
    path.write_text('[annotations]\ndelay = 2.0\n')
    base = DataConfig(faces=FaceConfig(crop_size=24, margin=0.8), clips=ClipConfig(stride=4))
    config = DataConfig.from_toml(path, base=base)
    assert config.annotations.delay == 2.0
    assert config.faces == base.faces and config.clips == base.clips
    assert DataConfig.from_toml(path).faces == FaceConfig()
    with pytest.raises(CoreAffectError, match="crop_size"):
        DataConfig.from_dict({"faces": {"crop_size": 0}}, base=base)


@pytest.mark.parametrize(("text", "message"), [
    ("[faces]\nmargn = 1.0\n", "unknown key"),
    ("[face]\nmargin = 1.0\n", "unknown section"),
    ("[faces]\ndetector = 'mtcnn'\n", "detector"),
    ("[faces]\ndetector = 'yunet'\n", "yunet_model"),
    ("[clips]\nmin_face = 2\n", "min_face"),
    ("[faces\n", "not valid TOML"),
    ("faces = 3\n", "table"),
])
def test_bad_toml_names_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CoreAffectError, match=message) as info:
        DataConfig.from_toml(path)
    assert "bad.toml" in str(info.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[faces]\n# marg\xe9 ajust\xe9e\nmargin = 0.3\n".encode("latin-1"))
    with pytest.raises(CoreAffectError, match=r"latin1.toml: not valid TOML"):
        DataConfig.from_toml(path)


def test_missing_file(tmp_path):
    with pytest.raises(CoreAffectError, match="no such configuration file"):
        DataConfig.from_toml(tmp_path / "absent.toml")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(CoreAffectError, match=r"folder.toml: cannot read the configuration file"):
        DataConfig.from_toml(tmp_path / "folder.toml")


def test_frozen():
    with pytest.raises(AttributeError):
        DataConfig().clips.length = 8  # type: ignore[misc]


# (section, field, bad value, a fragment of what the message says is expected)
BAD_SETTINGS = [
    ("video", "fps", "30", "number > 0"),
    ("video", "fps", 0, "number > 0"),
    ("video", "fps", -25.0, "number > 0"),
    ("video", "fps", float("nan"), "finite"),
    ("video", "fps", float("inf"), "finite"),
    ("video", "fps", True, "number > 0"),
    ("video", "chunk_size", 1.5, "integer >= 1"),
    ("video", "chunk_size", 64.0, "integer >= 1"),
    ("video", "chunk_size", 0, "integer >= 1"),
    ("video", "chunk_size", "64", "integer >= 1"),
    ("faces", "detector", 3, "one of 'haar', 'yunet', 'none'"),
    ("faces", "yunet_model", 3, "ONNX"),
    ("faces", "detect_every", 2.5, "integer >= 1"),
    ("faces", "detect_every", 0, "integer >= 1"),
    ("faces", "detect_every", True, "integer >= 1"),
    ("faces", "crop_size", 112.5, "integer >= 8"),
    ("faces", "crop_size", "112", "integer >= 8"),
    ("faces", "crop_size", 4, "integer >= 8"),
    ("faces", "margin", float("nan"), "finite number >= 0"),
    ("faces", "margin", float("inf"), "finite number >= 0"),
    ("faces", "margin", -0.1, "finite number >= 0"),
    ("faces", "margin", "0.25", "finite number >= 0"),
    ("faces", "smoothing", float("nan"), "[0, 1)"),
    ("faces", "smoothing", 1.0, "[0, 1)"),
    ("faces", "smoothing", "0.6", "[0, 1)"),
    ("faces", "hold_frames", 2.5, "integer >= 0"),
    ("faces", "hold_frames", -1, "integer >= 0"),
    ("faces", "hold_frames", False, "integer >= 0"),
    ("faces", "min_face", -1, "[0, 1]"),
    ("faces", "min_face", 1.5, "[0, 1]"),
    ("faces", "min_face", float("nan"), "[0, 1]"),
    ("faces", "min_face", "0.1", "[0, 1]"),
    ("faces", "detection_width", -1, "integer >= 0"),
    ("faces", "detection_width", 400.5, "integer >= 0"),
    ("faces", "side", 1, "one of 'left', 'right' or None"),
    ("annotations", "fusion", 1, "one of 'mean', 'ewe'"),
    ("annotations", "delay", float("nan"), "finite"),
    ("annotations", "delay", float("inf"), "finite"),
    ("annotations", "delay", "2.0", "finite"),
    ("annotations", "delay", None, "finite"),
    ("clips", "length", 16.5, "integer >= 1"),
    ("clips", "length", 0, "integer >= 1"),
    ("clips", "stride", 8.0, "integer >= 1"),
    ("clips", "stride", True, "integer >= 1"),
    ("clips", "min_labelled", float("nan"), "[0, 1]"),
    ("clips", "min_labelled", -0.5, "[0, 1]"),
    ("clips", "min_face", "0.5", "[0, 1]"),
    ("clips", "min_face", float("nan"), "[0, 1]"),
]
SECTIONS = {"video": VideoConfig, "faces": FaceConfig, "annotations": AnnotationConfig,
            "clips": ClipConfig}


def _toml(value) -> str:
    """``value`` as TOML writes it (None has no TOML form: tests with it are Python-only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value)


@pytest.mark.parametrize(("section", "name", "value", "expected"), BAD_SETTINGS)
def test_bad_setting_in_python_names_section_field_value_and_expectation(section, name, value,
                                                                         expected):
    with pytest.raises(CoreAffectError) as info:
        SECTIONS[section](**{name: value})
    message = str(info.value)
    assert f"{section}.{name} must be" in message
    assert expected in message
    assert repr(value) in message


@pytest.mark.parametrize(("section", "name", "value", "expected"),
                         [case for case in BAD_SETTINGS if case[2] is not None])
def test_bad_setting_in_toml_names_file_section_field_and_value(tmp_path, section, name, value,
                                                                expected):
    path = tmp_path / "settings.toml"
    path.write_text(f"[{section}]\n{name} = {_toml(value)}\n")
    with pytest.raises(CoreAffectError) as info:
        DataConfig.from_toml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {section}.{name} must be")
    assert expected in message
    assert repr(value) in message


@pytest.mark.parametrize(("section", "name", "value", "expected"),
                         [case for case in BAD_SETTINGS if case[2] is not None])
def test_bad_setting_over_a_base_is_rejected(section, name, value, expected):
    with pytest.raises(CoreAffectError, match=f"^saved.json: {section}.{name} must be"):
        DataConfig.from_dict({section: {name: value}}, source="saved.json", base=DataConfig())


@pytest.mark.parametrize(("text", "message"), [
    ('[video]\nfps = "30"\n', "video.fps must be a finite number > 0"),
    ("[faces]\nmargin = nan\n", "faces.margin must be a finite number >= 0, got nan"),
    ("[faces]\ncrop_size = 112.5\n", "faces.crop_size must be an integer >= 8, got 112.5"),
    ("[clips]\nlength = 500\n", "[clips] length = 500 is longer than the 400-frame sequences"),
])
def test_train_with_a_bad_config_exits_1_with_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    code = main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"coreaffect train: error: {path}: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_good_settings_of_every_kind_are_kept():
    config = DataConfig(
        video=VideoConfig(fps=25, chunk_size=1),  # an int is a number of frames per second
        faces=FaceConfig(detector="yunet", yunet_model="yunet.onnx", detect_every=1,
                         crop_size=8, margin=0, smoothing=0, hold_frames=0, min_face=0,
                         detection_width=0, side="left"),
        annotations=AnnotationConfig(fusion="ewe", delay=-0.5),
        clips=ClipConfig(length=1, stride=1, min_labelled=0, min_face=1))
    assert DataConfig.from_dict(config.to_dict()) == config
    assert FaceConfig(min_face=1.0, margin=3).margin == 3
    assert VideoConfig(fps=None).fps is None


def test_numpy_and_path_settings_become_plain_python():
    faces = FaceConfig(detector="yunet", yunet_model=Path("model.onnx"),
                       crop_size=np.int64(48), margin=np.float32(0.5))
    video = VideoConfig(fps=np.float64(30.0), chunk_size=np.int32(16))
    assert faces.yunet_model == "model.onnx" and type(faces.crop_size) is int
    assert type(faces.margin) is float and faces.margin == 0.5
    assert type(video.fps) is float and type(video.chunk_size) is int
    json.dumps(DataConfig(faces=faces, video=video).to_dict())  # stays JSON-serialisable


@pytest.mark.parametrize("section", ["video", "faces", "annotations", "clips"])
def test_sections_must_be_their_dataclass(section):
    with pytest.raises(CoreAffectError, match=f"DataConfig.{section} must be a"):
        DataConfig(**{section: {"margin": 1.0}})
