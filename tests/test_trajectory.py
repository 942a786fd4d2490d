"""AffectTrajectory on its own: CSV round trips (missing values, no latent), rows, DataFrame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coreaffect.errors import CoreAffectError
from coreaffect.trajectory import AffectRow, AffectTrajectory


def _trajectory(frames: int = 6, latent: int = 2, stage: str = "smoothed") -> AffectTrajectory:
    rng = np.random.default_rng(0)
    mean = np.tanh(rng.normal(size=(frames, 2)))
    var = rng.uniform(0.01, 0.1, size=(frames, 2))
    found = np.ones(frames, bool)
    found[2:3] = False
    if stage == "raw":  # no estimate where there is no face
        mean[2:3] = var[2:3] = np.nan
    half = 1.645 * np.sqrt(var)
    return AffectTrajectory(times=np.arange(frames) / 25.0, indices=np.arange(frames) + 10,
                            mean=mean, var=var, lower=mean - half, upper=mean + half,
                            face_found=found, latent_mean=rng.normal(size=(frames, latent)),
                            level=0.9, stage=stage)


@pytest.mark.parametrize(("latent", "stage"), [(2, "smoothed"), (0, "raw")])
def test_csv_round_trip_keeps_every_column(tmp_path, latent, stage):
    trajectory = _trajectory(latent=latent, stage=stage)
    path = trajectory.to_csv(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == trajectory.columns and len(lines) == 1 + len(trajectory)
    back = AffectTrajectory.read_csv(path, level=0.9, stage=stage)
    for field in ("times", "mean", "var", "lower", "upper", "latent_mean"):
        # 6 significant digits in the file; a missing value is an empty field, read as NaN
        np.testing.assert_allclose(getattr(back, field), getattr(trajectory, field),
                                   rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(back.indices, trajectory.indices)
    np.testing.assert_array_equal(back.face_found, trajectory.face_found)
    assert back.latent_mean.shape == (len(trajectory), latent)
    if stage == "raw":
        assert ",,," in lines[3]  # frame 2 has no estimate


def test_a_csv_file_says_which_stage_and_level_it_holds(tmp_path):
    trajectory = dataclasses.replace(_trajectory(stage="filtered"), level=0.5)
    path = trajectory.to_csv(tmp_path / "t.csv")
    assert path.read_text().splitlines()[1].split(",")[11:13] == ["filtered", "0.5"]
    back = AffectTrajectory.read_csv(path)
    assert (back.stage, back.level) == ("filtered", 0.5)
    assert AffectTrajectory.read_csv(path, level=0.5, stage="filtered").stage == "filtered"
    with pytest.raises(CoreAffectError, match="t.csv: holds the level 0.5, not 0.9"):
        AffectTrajectory.read_csv(path, level=0.9)
    with pytest.raises(CoreAffectError, match="holds the stage 'filtered', not 'smoothed'"):
        AffectTrajectory.read_csv(path, stage="smoothed")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",filtered,", ",smoothed,")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CoreAffectError, match="one stage at one level"):
        AffectTrajectory.read_csv(path)
    # a file written before files said so: without the two columns, as told, else smoothed 0.9
    old = ["\n".join(",".join(cells[:11] + cells[13:]) for cells in
                     (line.split(",") for line in lines))]
    (tmp_path / "old.csv").write_text(old[0] + "\n")
    earlier = AffectTrajectory.read_csv(tmp_path / "old.csv")
    assert (earlier.stage, earlier.level) == ("smoothed", 0.9)
    np.testing.assert_allclose(earlier.latent_mean, trajectory.latent_mean, rtol=1e-5)
    assert AffectTrajectory.read_csv(tmp_path / "old.csv", 0.5, "filtered").level == 0.5


def test_csv_times_of_a_long_recording_stay_distinct(tmp_path):
    """Frames 250,000 on at 25 fps are 10,000 s in: 6 significant digits would merge them."""
    trajectory = _trajectory(frames=6)
    trajectory = dataclasses.replace(trajectory, times=(250_000 + np.arange(6)) / 25.0,
                                     indices=250_000 + np.arange(6))
    back = AffectTrajectory.read_csv(trajectory.to_csv(tmp_path / "t.csv"))
    np.testing.assert_allclose(back.times, trajectory.times, rtol=0, atol=1e-6)
    assert "10000.04," in (tmp_path / "t.csv").read_text()


def test_read_csv_names_a_file_that_is_not_a_trajectory(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("time,valence,arousal\n0,0.1,0.2\n")
    with pytest.raises(CoreAffectError, match="labels.csv"):
        AffectTrajectory.read_csv(path)
    for text in ("video,time\nsynth000,0.1\n", "0;u1;v1;valence;0.1\n", ""):  # DANTE, empty
        path.write_text(text)
        with pytest.raises(CoreAffectError, match="labels.csv: not a coreaffect trajectory"):
            AffectTrajectory.read_csv(path)
    good = _trajectory().to_csv(tmp_path / "t.csv").read_text().splitlines()
    header, first = good[0], good[1]
    for row, problem in [(first.rsplit(",", 1)[0], r"line 2: \d+ cells, the header names"),
                         (first.split(",", 1)[0] + ",x," + first.split(",", 2)[2],
                          "line 2: could not convert string to float: 'x'")]:
        path.write_text(f"{header}\n{row}\n")
        with pytest.raises(CoreAffectError, match=f"labels.csv: {problem}"):
            AffectTrajectory.read_csv(path)


def test_rows_are_the_frames_in_order():
    trajectory = _trajectory()
    rows = list(trajectory.rows())
    assert len(rows) == len(trajectory) and all(isinstance(r, AffectRow) for r in rows)
    third = rows[3]
    assert third.index == 13 and third.time == pytest.approx(3 / 25)
    assert (third.valence, third.arousal) == tuple(trajectory.mean[3])
    assert (third.valence_lower, third.arousal_upper) == (trajectory.lower[3, 0],
                                                          trajectory.upper[3, 1])
    assert rows[2].face_found is False
    np.testing.assert_array_equal(third.latent_mean, trajectory.latent_mean[3])


def test_dataframe_has_the_csv_columns():
    pd = pytest.importorskip("pandas")
    trajectory = _trajectory()
    frame = trajectory.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == trajectory.columns
    assert frame["face_found"].dtype == bool and len(frame) == len(trajectory)
    np.testing.assert_allclose(frame[["valence", "arousal"]].to_numpy(), trajectory.mean)


def test_read_csv_refuses_binary_files_and_rows_without_frame_or_face_flag(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(CoreAffectError, match="image.csv: not a coreaffect trajectory"):
        AffectTrajectory.read_csv(path)
    good = _trajectory().to_csv(tmp_path / "t.csv").read_text().splitlines()
    header, cells = good[0], good[1].split(",")
    for column, value in ((10, ""), (10, "0.5"), (0, ""), (0, "nan"), (0, "1.5"), (0, "inf"),
                          (0, "-1"), (0, "x"), (0, "1e300")):
        row = cells.copy()
        row[column] = value
        path.write_text(f"{header}\n{','.join(row)}\n")
        with pytest.raises(CoreAffectError, match="image.csv: line 2: frame must be a whole "
                                                  "number >= 0 and face_found 0 or 1"):
            AffectTrajectory.read_csv(path)
    cells[0] = "3.0"  # as a spreadsheet may save it
    path.write_text(f"{header}\n{','.join(cells)}\n")
    assert AffectTrajectory.read_csv(path).indices.tolist() == [3]


def test_a_trajectory_of_no_frame_is_not_written(tmp_path):
    empty = _trajectory(frames=0, stage="prior")
    with pytest.raises(CoreAffectError, match=r"t\.csv: not written, the prior trajectory has "
                                              "no frame"):
        empty.to_csv(tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


def test_blank_lines_are_passed_over(tmp_path):
    trajectory = _trajectory()
    path = trajectory.to_csv(tmp_path / "t.csv")
    path.write_text(path.read_text() + "\n\n")
    back = AffectTrajectory.read_csv(path)
    np.testing.assert_array_equal(back.indices, trajectory.indices)


def test_any_band_level_survives_the_round_trip(tmp_path):
    trajectory = dataclasses.replace(_trajectory(), level=1 / 3)
    path = trajectory.to_csv(tmp_path / "t.csv")
    assert AffectTrajectory.read_csv(path).level == 1 / 3
    assert AffectTrajectory.read_csv(path, level=1 / 3).level == 1 / 3
