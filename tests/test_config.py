"""DataConfig: defaults, TOML loading, and errors that name the file and the key."""

from __future__ import annotations

import pytest

from coreaffect.config import ClipConfig, DataConfig, FaceConfig
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


def test_missing_file(tmp_path):
    with pytest.raises(CoreAffectError, match="no such configuration file"):
        DataConfig.from_toml(tmp_path / "absent.toml")


def test_frozen():
    with pytest.raises(AttributeError):
        DataConfig().clips.length = 8  # type: ignore[misc]
