"""CoreAffect on a short synthetic video: one row per frame, bands, causality, CSV, streaming."""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from coreaffect import CoreAffect, load_run
from coreaffect.demo import tiny_run
from coreaffect.errors import CoreAffectError, CoreAffectWarning
from coreaffect.faces import FaceCropper, FaceCrops
from coreaffect.pipeline import STAGES, AffectTrajectory
from coreaffect.video import FrameChunk, VideoSource


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def affect(tiny):
    return CoreAffect.load(tiny.run)


@pytest.fixture(scope="module")
def crops(affect, tiny, tmp_path_factory):
    return affect.crop(tiny.video(), spool=tmp_path_factory.mktemp("spool"))


def _frames(path) -> int:
    with VideoSource(path) as video:
        return sum(len(chunk.times) for chunk in video.chunks())


def test_one_row_per_frame_with_bands(affect, tiny):
    trajectory = affect.predict(tiny.video())
    assert len(trajectory) == _frames(tiny.video())
    assert trajectory.stage == "smoothed" and trajectory.level == 0.9
    assert np.all(np.diff(trajectory.times) > 0)
    assert np.isfinite(trajectory.mean).all()  # the smoother bridges frames without a face
    assert np.all(trajectory.lower <= trajectory.mean)
    assert np.all(trajectory.mean <= trajectory.upper)
    assert trajectory.latent_mean.shape == (len(trajectory), 2)
    narrow = affect.predict(tiny.video(), level=0.5)
    assert np.all(narrow.upper - narrow.lower <= trajectory.upper - trajectory.lower + 1e-9)


def test_every_stage_on_the_same_frames(affect, crops):
    stages = affect.stages_of(crops)
    assert list(stages) == list(STAGES)
    for trajectory in stages.values():
        assert len(trajectory) == len(crops.times)
        finite = np.isfinite(trajectory.mean).all(1)
        assert np.all(trajectory.lower[finite] <= trajectory.mean[finite] + 1e-12)
    # raw and prior have no estimate where there is no face
    assert np.isnan(stages["raw"].mean[~crops.face_found]).all()


def test_dynamics_changed_after_loading_take_effect(tiny, crops):
    affect = CoreAffect.load(tiny.run)
    before = affect.stages_of(crops)["smoothed"]
    affect.dynamics = copy.copy(affect.dynamics)  # the fixture's run stays as it was
    affect.dynamics.noise_scale_ = affect.dynamics.noise_scale_ * 100  # trust estimates less
    after = affect.stages_of(crops)["smoothed"]
    assert not np.allclose(after.mean, before.mean)
    assert np.mean(after.upper - after.lower) != pytest.approx(np.mean(before.upper - before.lower))


def test_bands_at_more_levels_are_those_each_level_gives(affect, crops):
    plain = affect.stages_of(crops)
    more = affect.stages_of(crops, band_levels=(0.5, 0.9, 0.95))
    for stage, trajectory in more.items():
        assert sorted(trajectory.bands) == [0.5, 0.95]  # the trajectory's own level is its own
        np.testing.assert_array_equal(trajectory.upper, plain[stage].upper)
        np.testing.assert_array_equal(trajectory.band(0.9)[0], plain[stage].lower)
    narrow = affect.stages_of(crops, level=0.5)
    for stage, trajectory in more.items():  # the same draws: equal to the band at its level
        for got, want in zip(trajectory.band(0.5), (narrow[stage].lower, narrow[stage].upper),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
    with pytest.raises(CoreAffectError, match="no band at level 0.8"):
        more["smoothed"].band(0.8)


def test_causal_rows_do_not_change_when_frames_are_appended(affect, crops):
    full = affect.predict_crops(crops, causal=True)
    lag = affect.latency_frames
    for cut in (30, 61):
        part = affect.predict_crops(FaceCrops(*(np.asarray(x)[:cut] for x in crops)),
                                    causal=True)
        assert len(part) == cut
        # final rows: estimates of frames whose windows were complete before the cut
        np.testing.assert_allclose(part.mean[:cut - lag], full.mean[:cut - lag], atol=1e-5)
        np.testing.assert_allclose(part.upper[:cut - lag], full.upper[:cut - lag], atol=1e-5)
        np.testing.assert_allclose(part.latent_mean[:cut - lag], full.latent_mean[:cut - lag],
                                   atol=1e-5)
    # the smoother, by contrast, uses later frames
    smoothed = affect.predict_crops(crops)
    assert not np.allclose(smoothed.mean, full.mean)


def test_causal_and_smoothed_agree_on_the_last_frame(affect, crops):
    stages = affect.stages_of(crops, stages=["smoothed", "filtered"])
    smoothed, filtered = stages["smoothed"], stages["filtered"]
    # p(z_T | all estimates) is both the filter's and the smoother's last posterior
    np.testing.assert_allclose(filtered.latent_mean[-1], smoothed.latent_mean[-1], atol=1e-9)
    assert not np.allclose(filtered.latent_mean[:-1], smoothed.latent_mean[:-1])
    assert affect.latency_frames == (affect.model.config.clip_length - 1
                                     + affect.model.temporal_context[1])


def test_lagged_rows_wait_for_their_look_ahead_only(affect, crops):
    lag = affect.lag
    assert lag == 8  # the run's, from bands.json
    full = affect.predict_crops(crops, lagged=True)
    assert full.stage == "lagged" and len(full) == len(crops.times)
    wait = affect.latency_frames + lag  # frame c's row is final at frame c + D + L
    for cut in (40, 70):
        part = affect.predict_crops(FaceCrops(*(np.asarray(x)[:cut] for x in crops)),
                                    lagged=True)
        np.testing.assert_allclose(part.latent_mean[:cut - wait], full.latent_mean[:cut - wait],
                                   atol=1e-5)
        np.testing.assert_allclose(part.upper[:cut - wait], full.upper[:cut - wait], atol=1e-5)
        # the rows after them are not final yet: their look-ahead was cut short
        assert not np.allclose(part.latent_mean[cut - wait:cut - lag],
                               full.latent_mean[cut - wait:cut - lag], atol=1e-5)
    stages = affect.stages_of(crops, stages=["smoothed", "filtered", "lagged"])
    smoothed, filtered = stages["smoothed"].latent_mean, stages["filtered"].latent_mean
    # the last L frames see every frame: the smoother's posteriors; the others differ from both
    np.testing.assert_allclose(full.latent_mean[-lag - 1:], smoothed[-lag - 1:], atol=1e-9)
    assert not np.allclose(full.latent_mean[:-lag - 1], smoothed[:-lag - 1])
    assert not np.allclose(full.latent_mean[:-lag - 1], filtered[:-lag - 1])


def test_runs_without_a_lag_and_other_lags(tiny, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    bands = json.loads((run / "bands.json").read_text())
    del bands["lag"]  # a run written before the lagged stage
    (run / "bands.json").write_text(json.dumps(bands))
    older = load_run(run)
    assert older.lag is None and "lagged" not in older.stages
    # another lag than the run's: its lagged band factors no longer apply
    with caplog.at_level(logging.WARNING, logger="coreaffect.pipeline"):
        other = CoreAffect.load(tiny.run, lag=4)
    assert "not calibrated" in caplog.text
    assert other.lag == 4 and other.band_scale["lagged"] == (1.0, 1.0)
    assert CoreAffect.load(tiny.run).band_scale["lagged"] != (1.0, 1.0)


def test_online_modes_are_checked(tiny, affect, crops):
    with pytest.raises(CoreAffectError, match="exclude"):
        affect.predict_crops(crops, causal=True, lagged=True)
    no_lag = CoreAffect.load(tiny.run, lag=None)
    assert "lagged" not in no_lag.stages
    with pytest.raises(CoreAffectError, match="lag"):
        no_lag.predict_crops(crops, lagged=True)
    with pytest.raises(CoreAffectError, match="lag"):
        CoreAffect.load(tiny.run, lag=0)


def test_csv_round_trip(affect, crops, tmp_path):
    trajectory = affect.predict_crops(crops)
    path = trajectory.to_csv(tmp_path / "t.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == trajectory.columns
    back = AffectTrajectory.read_csv(path)
    assert len(back) == len(trajectory)
    np.testing.assert_allclose(back.mean, trajectory.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.lower, trajectory.lower, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(back.face_found, trajectory.face_found)
    np.testing.assert_array_equal(back.indices, trajectory.indices)


def _first_frames(affect, tiny, count: int):
    """The video's first frames as (image, time) pairs, and their face crops."""
    with VideoSource(tiny.video()) as video:
        frames = [(f.image, f.time) for _, f in zip(range(count), video, strict=False)]
    crops = FaceCropper(affect.data_config.faces).crop(FrameChunk(
        np.stack([image for image, _ in frames]), np.array([t for _, t in frames]),
        np.arange(len(frames))))
    return frames, crops


def test_stream_equals_causal_predict(affect, tiny):
    frames, crops = _first_frames(affect, tiny, 90)
    causal = affect.predict_crops(crops, causal=True)
    rows = list(affect.stream(frames))  # the last rows come once the frames run out
    assert [r.index for r in rows] == list(range(len(frames)))
    got = np.array([[r.valence, r.arousal, r.valence_upper, r.arousal_lower] for r in rows])
    want = np.column_stack([causal.mean, causal.upper[:, 0], causal.lower[:, 1]])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert [r.face_found for r in rows] == list(causal.face_found)


def test_stream_equals_lagged_predict(affect, tiny):
    frames, crops = _first_frames(affect, tiny, 60)
    lagged = affect.predict_crops(crops, lagged=True)
    rows = list(affect.stream(frames, lagged=True))
    assert [r.index for r in rows] == list(range(len(frames)))
    got = np.array([[r.valence, r.arousal, r.valence_lower, r.arousal_upper] for r in rows])
    want = np.column_stack([lagged.mean, lagged.lower[:, 0], lagged.upper[:, 1]])
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(np.array([r.latent_mean for r in rows]), lagged.latent_mean,
                               atol=1e-5)
    # shorter than the look-ahead and than a clip: every row comes at the end, as in batch
    with pytest.warns(CoreAffectWarning, match="5 frames, fewer than one 16-frame clip"):
        short = list(affect.stream(frames[:5], lagged=True))
    assert [r.index for r in short] == list(range(5))
    batch = affect.predict_crops(FaceCrops(*(np.asarray(x)[:5] for x in crops)), lagged=True)
    np.testing.assert_allclose([[r.valence, r.arousal_upper] for r in short],
                               np.column_stack([batch.mean[:, 0], batch.upper[:, 1]]), atol=1e-4)


def test_stream_equals_causal_predict_on_a_folder_with_missing_frames(affect, tiny, tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    with VideoSource(tiny.video()) as video:
        for frame in video:
            if not 30 <= frame.index < 40:  # ten frames left out, as Aff-Wild2's folders do
                cv2.imwrite(str(folder / f"{frame.index:05d}.png"),
                            cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    causal = affect.predict(folder, causal=True)
    rows = list(affect.stream(folder))
    assert [r.index for r in rows] == list(causal.indices) == list(range(100))
    np.testing.assert_allclose([r.time for r in rows], causal.times)
    assert [r.face_found for r in rows] == list(causal.face_found)
    assert not any(r.face_found for r in rows[30:40])
    np.testing.assert_allclose([[r.valence, r.arousal_upper] for r in rows],
                               np.column_stack([causal.mean[:, 0], causal.upper[:, 1]]),
                               atol=1e-4)
    # without faces the filter's latent spreads at every frame, and its bands widen with it:
    # their quantiles are the decoded mixture's own, not those of noisy draws of the label noise
    width = causal.upper - causal.lower
    assert (np.diff(width[29:40], axis=0) > 0).all()


def test_a_video_without_estimates_is_warned_about(affect, tiny, tmp_path, caplog):
    import cv2

    short, blank = tmp_path / "short", tmp_path / "blank"
    short.mkdir()
    blank.mkdir()
    with VideoSource(tiny.video()) as video:
        for frame in video:
            if frame.index < 10:
                cv2.imwrite(str(short / f"{frame.index:05d}.png"),
                            cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            if frame.index < 20:  # the same size, no face
                cv2.imwrite(str(blank / f"{frame.index:05d}.png"), np.zeros_like(frame.image))
    with caplog.at_level(logging.WARNING, logger="coreaffect.pipeline"):
        with pytest.warns(CoreAffectWarning, match="short: 10 frames, fewer than one 16-frame "
                          "clip") as caught:
            assert len(affect.predict(short)) == 10
        assert caught[0].filename == __file__  # the caller's line, not the library's
        with pytest.warns(CoreAffectWarning, match="blank: no face found in any of its 20 "
                          "frames"):
            assert len(affect.predict(blank)) == 20
    assert "short: 10 frames, fewer than one 16-frame clip" in caplog.text
    assert "blank: no face found in any of its 20 frames" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coreaffect.pipeline"):
        affect.predict(tiny.video())
    assert "says anything of the face" not in caplog.text


def test_a_warning_found_deep_in_the_library_points_at_the_callers_line(affect, tiny, tmp_path):
    import cv2

    gap = tmp_path / "gap"  # frames 0-19, then 1600-1619: 63 s missing at 25 Hz
    gap.mkdir()
    with VideoSource(tiny.video()) as video:
        for frame in video:
            if frame.index < 40:
                number = frame.index if frame.index < 20 else frame.index + 1580
                cv2.imwrite(str(gap / f"{number:05d}.png"),
                            cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    with pytest.warns(CoreAffectWarning, match=r"gap: frames 20 to 1599 .* are missing") as caught:
        affect.predict(gap)
    assert caught[0].filename == __file__  # found by the face cropper, inside a generator


def test_stream_takes_frames_from_memory(affect, tiny):
    with VideoSource(tiny.video()) as video:
        frames = [(f.image, f.time) for _, f in zip(range(25), video, strict=False)]
    rows = list(affect.stream(frames))
    assert len(rows) == 25 and rows[-1].time == pytest.approx(frames[-1][1])


def test_stream_takes_grey_frames_as_rgb_and_warns_of_a_stream_without_estimates(affect,
                                                                                 tiny):
    with VideoSource(tiny.video()) as video:
        frames = [(f.image[..., 1], f.time) for _, f in zip(range(20), video, strict=False)]
    as_rgb = [(np.repeat(image[..., None], 3, axis=2), time) for image, time in frames]
    _rows_equal(list(affect.stream(frames)), list(affect.stream(as_rgb)))
    _rows_equal(list(affect.stream([(image[..., None], t) for image, t in frames])),
                list(affect.stream(as_rgb)))
    with pytest.warns(CoreAffectWarning, match="the stream: 10 frames, fewer than one 16-frame "
                      "clip") as caught:
        assert len(list(affect.stream(frames[:10]))) == 10
    assert caught[0].filename == __file__
    blank = [(np.zeros_like(image), time) for image, time in frames]
    with pytest.warns(CoreAffectWarning, match="no face found in any of its 20 frames"):
        list(affect.stream(blank))


def test_stream_takes_a_numpy_camera_index(affect):
    from coreaffect.errors import VideoError

    with pytest.raises(VideoError, match="camera"):  # opened as a camera: none here
        list(affect.stream(np.int64(57)))


def test_stream_refuses_frames_that_are_not_uint8_rgb(affect, tiny):
    with VideoSource(tiny.video()) as video:
        frames = [(f.image, f.time) for _, f in zip(range(3), video, strict=False)]
    scaled = [(image / 255.0, time) for image, time in frames]  # floats in [0, 1]
    with pytest.raises(CoreAffectError, match=r"frame 0: .*uint8 RGB or \(H, W\) grey, got "
                                              "float64"):
        list(affect.stream(scaled))
    with pytest.raises(CoreAffectError, match=r"frame 0: .*uint8 RGB or \(H, W\) grey, got "
                                              r"uint8 \(\d+, \d+, 4\)"):
        list(affect.stream([(np.dstack([frames[0][0], frames[0][0][..., :1]]), 0.0)]))
    bare = [image for image, _ in frames]  # images without their times
    with pytest.raises(CoreAffectError, match=r"frame 0: .*\(image, time\) pairs .*got "
                                              r"ndarray of shape \(\d+, \d+, 3\)$"):
        list(affect.stream(bare))


@pytest.mark.parametrize("bad, problem", [(0.4, "time 0.4 s does not follow the previous "
                                                 "frame's 1.16 s"),
                                         (float("nan"), "must be finite, got nan"),
                                         (None, "must be a number of seconds, got None")])
def test_stream_checks_each_time_as_its_frame_arrives(affect, tiny, bad, problem):
    with VideoSource(tiny.video()) as video:
        frames = [(f.image, i * 0.04) for i, f in zip(range(40), video, strict=False)]
    good = frames[:30]
    frames[30] = (frames[30][0], bad)
    rows = []
    with pytest.raises(CoreAffectError, match=f"frame 30: .*{problem}"):
        rows.extend(affect.stream(frames))
    _rows_equal(rows, list(affect.stream(good)))  # every row of the frames before it, no more


def test_stream_refuses_empty_images_and_numbering_that_skips_faster_than_any_camera(affect,
                                                                                     tiny):
    with VideoSource(tiny.video()) as video:
        frames = [f for _, f in zip(range(20), video, strict=False)]
    empty = [(np.zeros((0, 0, 3), np.uint8), 0.0)]
    with pytest.raises(CoreAffectError, match=r"frame 0: .*non-empty .*, got uint8 \(0, 0, 3\)"):
        list(affect.stream(empty))
    jumped = [*frames[:10], *(f._replace(index=f.index + 10**9) for f in frames[10:])]
    rows = []
    with pytest.raises(CoreAffectError, match=f"frame {10**9 + 10}: {10**9} frames are missing "
                                              "after frame 9, in 0.04 s"):
        rows.extend(affect.stream(jumped))  # at once, not after a billion rows
    assert [row.index for row in rows] == list(range(10))  # the rows of the frames before it
    # a hole its times allow gets its rows, as predict gives a folder's missing frames
    holed = [*frames[:10], *(f._replace(index=f.index + 5, time=f.time + 0.2)
                             for f in frames[10:])]
    assert [row.index for row in affect.stream(holed)] == list(range(25))


def _rows_equal(got, want):
    assert [r.index for r in got] == [r.index for r in want]
    np.testing.assert_allclose([r[2:8] for r in got], [r[2:8] for r in want], atol=1e-6)


@pytest.mark.parametrize("lagged", [False, True])
def test_a_stopped_or_interrupted_stream_gives_the_rows_of_every_frame_taken(affect, tiny,
                                                                            lagged):
    """A camera ends only when told: by ``stop``, set while frame 40 is taken, or by Ctrl-C
    while frame 30 is read. Either way the rows of the frames before come, as if the source
    had ended there."""
    import threading

    with VideoSource(tiny.video()) as video:
        frames = [(f.image, f.time) for _, f in zip(range(60), video, strict=False)]
    stop = threading.Event()

    def camera(interrupt_at=None):
        for k, frame in enumerate(frames):
            if k == interrupt_at:
                raise KeyboardInterrupt
            if k == 40:
                stop.set()
            yield frame

    _rows_equal(list(affect.stream(camera(), lagged=lagged, stop=stop)),
                list(affect.stream(frames[:41], lagged=lagged)))
    rows = []
    with pytest.raises(KeyboardInterrupt):
        rows.extend(affect.stream(camera(interrupt_at=30), lagged=lagged))
    _rows_equal(rows, list(affect.stream(frames[:30], lagged=lagged)))
    with pytest.raises(ValueError, match="stop must have an is_set"):
        next(affect.stream(frames, stop=True))


def test_a_stream_closes_the_video_it_opened(affect, tiny, monkeypatch):
    closed = []
    monkeypatch.setattr(VideoSource, "close", lambda self: closed.append(self.name))
    stream = affect.stream(tiny.video())
    next(stream)
    assert closed == []
    stream.close()  # the consumer stopped early
    assert closed == [Path(tiny.video()).stem]


def test_stream_checks_that_frame_indices_increase(affect, tiny):

    with VideoSource(tiny.video()) as video:
        frames = [f for _, f in zip(range(20), video, strict=False)]
    frames[10] = frames[10]._replace(index=9)  # a repeated index, with a later time
    with pytest.raises(CoreAffectError, match="frame 9: frame indices must increase, and it "
                                              "follows frame 9"):
        list(affect.stream(frames))


@pytest.mark.parametrize("level", [0.0, 1.0, 90, float("nan"), True, "0.9"])
def test_every_entry_point_checks_the_level(affect, crops, level):
    for call in (lambda: affect.predict_crops(crops, level=level),
                 lambda: affect.stages_of(crops, level),
                 lambda: next(affect.stream([], level=level)),
                 lambda: affect.decode(np.zeros((1, 2)), np.eye(2)[None], level)):
        with pytest.raises(CoreAffectError, match="level must be a probability"):
            call()
    for half in (np.float32(0.5), np.array(0.5), torch.tensor(0.5)):
        assert affect.predict_crops(crops, level=half).level == pytest.approx(0.5)


@pytest.mark.parametrize("samples", [0, 1, 3, 501, 2.0])
def test_decode_samples_must_be_antithetic_pairs(tiny, samples):
    with pytest.raises(CoreAffectError, match="n_decode_samples"):
        CoreAffect.load(tiny.run, n_decode_samples=samples)
    assert CoreAffect.load(tiny.run, n_decode_samples=np.int64(8)).n_decode_samples == 8
    for seed in (None, 1.5, "0", -1, 2**64):
        with pytest.raises(CoreAffectError, match="random_state must be an integer seed"):
            CoreAffect.load(tiny.run, random_state=seed)
    numpy_seeded = CoreAffect.load(tiny.run, random_state=np.int64(3))  # numpy's integers too
    same = CoreAffect.load(tiny.run, random_state=3)
    for got, want in zip(numpy_seeded.decode(np.zeros((1, 2)), 0.1 * np.eye(2)[None], 0.9),
                         same.decode(np.zeros((1, 2)), 0.1 * np.eye(2)[None], 0.9), strict=True):
        np.testing.assert_array_equal(got, want)
    for setting in ("chunk_frames", "segment_frames", "decode_chunk"):
        with pytest.raises(CoreAffectError, match="must be integers >= 1, got"):
            CoreAffect.load(tiny.run, **{setting: 0})
    with pytest.raises(CoreAffectError, match="not of 'smothed'"):  # a typo, not ignored
        CoreAffect.load(tiny.run, band_scale={"smothed": 2.0})


def test_decoding_checks_the_latents_it_is_given(affect):
    mean, cov = np.zeros((1, 2)), 0.01 * np.eye(2)[None]
    for bad_mean, bad_cov, problem in [
            (mean[0], cov[0], r"means \(T, 2\) and covariances \(T, 2, 2\), got \(2,\)"),
            (np.zeros((1, 3)), np.eye(3)[None], r"got \(1, 3\) and \(1, 3, 3\)"),
            (mean, np.full((1, 2, 2), np.nan), "finite"),
            (mean, -cov, "positive semi-definite; one has an eigenvalue of -0.01"),
            (mean, np.array([[[1.0, 0.5], [0.0, 1.0]]]), "symmetric")]:
        with pytest.raises(CoreAffectError, match=problem):
            affect.decode(bad_mean, bad_cov, 0.9)
    # a point (zero covariance) and rounding below zero are covariances
    assert np.isfinite(affect.decode(mean, 0 * cov, 0.9)[0]).all()
    assert np.isfinite(affect.decode(mean, np.diag([0.01, -1e-9])[None], 0.9)[0]).all()
    assert np.isfinite(affect.decode(mean, -1e-13 * np.eye(2)[None], 0.9)[0]).all()


def test_a_device_this_machine_lacks_is_refused_up_front(tiny):
    with pytest.raises(CoreAffectError, match="device"):
        CoreAffect.load(tiny.run, device="cuda:99")
    with pytest.raises(CoreAffectError, match="not a device torch knows"):
        CoreAffect.load(tiny.run, device="gpu")


def test_dataframe(affect, crops):
    pd = pytest.importorskip("pandas")
    frame = affect.predict_crops(crops).to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns)[:3] == ["frame", "time",
                                                                           "valence"]


def test_run_with_only_the_hidden_route(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    (run / "bands.json").unlink()
    with pytest.raises(CoreAffectError, match=r"fitted, but bands.json is missing; put them"):
        load_run(run)  # not loaded with uncalibrated bands and no lagged stage
    for name in ("prior", "manifold", "dynamics"):
        for suffix in (".json", ".safetensors"):
            (run / f"{name}{suffix}").unlink()
    with pytest.raises(CoreAffectError, match=r"stages.json says the later stages were fitted, "
                                              r"but manifold.json, .* bands.json are missing"):
        load_run(run)  # lost files are named, not passed over
    (run / "stages.json").unlink()  # now as train --hidden-route-only leaves a run
    affect = load_run(run)
    assert affect.stages == ("raw",)
    trajectory = affect.predict(tiny.video())
    assert trajectory.stage == "raw" and len(trajectory) == _frames(tiny.video())
    with pytest.raises(CoreAffectError, match="dynamics"):
        affect.predict(tiny.video(), causal=True)


def test_unreadable_video_is_a_clear_error(affect, tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    with pytest.raises(CoreAffectError):
        affect.predict(bad)
    with pytest.raises(CoreAffectError):
        affect.predict(tmp_path / "missing.mp4")


def test_crops_spooled_into_one_folder_keep_their_own_files(affect, tiny, crops, tmp_path,
                                                             monkeypatch):
    first = affect.crop(tiny.video(), spool=tmp_path)
    kept = np.array(first.crops[:5])
    other = next(v for v in sorted((tiny.corpus / "videos").iterdir()) if v != tiny.video())
    affect.crop(other, spool=tmp_path)  # another video, the same folder
    assert len(list(tmp_path.glob("crops-*.u8"))) == 2
    np.testing.assert_array_equal(first.crops[:5], kept)  # the first crops are still there
    real = FaceCropper.crop_video

    def failing(self, source):  # a video that breaks after its first chunk
        yield next(iter(real(self, source)))
        raise CoreAffectError("broken mid-video")

    monkeypatch.setattr(FaceCropper, "crop_video", failing)
    with pytest.raises(CoreAffectError, match="broken mid-video"):
        affect.crop(other, spool=tmp_path)
    assert len(list(tmp_path.glob("crops-*.u8"))) == 2  # a failed crop leaves no file


def test_segments_and_decoding_chunks_do_not_change_the_stages(tiny, affect, crops):
    # the tiny video is one segment by default; here the hidden route runs 7 frames at a time
    # (each with its margins, off the feature grid of S = 4) and decoding one frame at a time
    assert len(crops.times) <= affect.segment_frames
    pieces = CoreAffect.load(tiny.run, segment_frames=7, decode_chunk=1)
    whole, parts = affect.stages_of(crops), pieces.stages_of(crops)
    for stage in STAGES:
        for field in ("mean", "var", "lower", "upper", "latent_mean"):
            np.testing.assert_allclose(getattr(parts[stage], field),
                                       getattr(whole[stage], field), rtol=0, atol=1e-5,
                                       err_msg=f"{stage} {field}")


@pytest.fixture(scope="module")
def in_float32(affect, tiny):
    """Every stage and the streamed rows of the tiny video under torch's float32 default; a
    module fixture, so made before a test's float64 fixture switches the default."""
    frames, _ = _first_frames(affect, tiny, 40)
    return affect.stages_of(affect.crop(tiny.video())), list(affect.stream(frames))


def _same_stages(got, want):
    for stage, trajectory in want.items():
        for name in ("mean", "lower", "upper", "latent_mean"):
            np.testing.assert_array_equal(getattr(got[stage], name), getattr(trajectory, name),
                                          err_msg=f"{stage} {name}")


def test_a_float64_default_dtype_changes_nothing(affect, tiny, in_float32, float64, tmp_path):
    # the networks are built and run in float32 whatever the default; the dynamics in float64
    stages, rows = in_float32
    frames, _ = _first_frames(affect, tiny, 40)
    for pipeline in (affect, CoreAffect.load(tiny.run)):  # loaded before and after the switch
        _same_stages(pipeline.stages_of(pipeline.crop(tiny.video())), stages)
        streamed = list(pipeline.stream(frames))
        assert [row[:-1] for row in streamed] == [row[:-1] for row in rows]
        np.testing.assert_array_equal([row.latent_mean for row in streamed],
                                      [row.latent_mean for row in rows])
    retrained = tiny_run(tmp_path)  # the same seed: the same fits, to the last bit
    again = CoreAffect.load(retrained.run)
    _same_stages(again.stages_of(again.crop(retrained.video())), stages)


def test_released_pages_keep_the_data(tmp_path):
    from coreaffect.pipeline import _release_pages

    path = tmp_path / "crops.u8"
    np.arange(4 * 8 * 8 * 3, dtype=np.uint8).tofile(path)
    read = np.memmap(path, dtype=np.uint8, mode="r", shape=(4, 8, 8, 3))
    want = np.array(read)
    _release_pages(read[1:3])
    np.testing.assert_array_equal(read, want)  # read again from the file
    changed = np.memmap(path, dtype=np.uint8, mode="c", shape=(4, 8, 8, 3))
    changed[0] = 7  # a private copy-on-write change, in memory only
    _release_pages(changed)
    assert (changed[0] == 7).all()
    _release_pages(want)  # not a mapping: nothing to do


def test_the_prior_stage_is_the_prior_s_own_prediction(affect, crops):
    import torch

    prior = affect.stages_of(crops, stages=["prior"])["prior"]
    found = np.asarray(crops.face_found, bool)
    estimate = affect.model.predict_dense(crops.crops, chunk_frames=affect.chunk_frames)
    rows = torch.as_tensor(np.flatnonzero(found))
    direct = affect.prior.predict(type(estimate)(*(x[rows].float() for x in estimate)))
    # to float32 rounding of batched rows, as HiddenRoutePrior.predict is per estimate
    np.testing.assert_allclose(prior.mean[found], direct.mean.double().numpy(), atol=1e-3)
    assert np.isnan(prior.mean[~found]).all()


def _random_trunk(affect: CoreAffect, clip: int, pools: tuple[int, ...]) -> CoreAffect:
    """The tiny run's prior and dynamics behind a freshly initialised network of another clip
    length and temporal pooling (the same embedding width)."""
    import torch

    from coreaffect.hidden_route import HiddenRouteNet, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig.from_dict({**affect.model.config.to_dict(), "clip_length": clip,
                                    "temporal_pool": pools})
    return CoreAffect(HiddenRouteNet(config), affect.data_config, affect.prior, affect.dynamics,
                      band_scale=affect.band_scale, lag=affect.lag)


@pytest.mark.parametrize("clip, pools", [(8, (2, 2, 2)), (4, (1, 1, 4)), (16, (1, 1, 16)),
                                         (9, (1, 1, 3)), (32, (1, 2, 2))])
def test_streamed_estimates_are_the_dense_ones_as_soon_as_they_are_final(affect, tiny, clip,
                                                                         pools):
    # the stream's hidden-route estimate of frame c, once frame c + D is in, against dense
    # inference over the whole video, for trunks whose stride is short or long beside a clip
    from coreaffect.streaming import _StreamState

    other = _random_trunk(affect, clip, pools)
    _, crops = _first_frames(affect, tiny, 100)  # longer than the stream's buffers
    dense = other.model.predict_dense(crops.crops)
    state, wait = _StreamState(other), other.latency_frames
    for i, crop in enumerate(crops.crops):
        state.push(crop, float(crops.times[i]), i, bool(crops.face_found[i]), 0.9)
        if i >= wait:
            streamed = state._estimate(i - wait)
            np.testing.assert_allclose(streamed.mean[0], dense.mean[i - wait], atol=1e-5)
            np.testing.assert_allclose(streamed.var[0], dense.var[i - wait], atol=1e-5)


@pytest.mark.parametrize("clip, pools", [(8, (2, 2, 2)), (4, (1, 2, 2)), (16, (1, 1, 1))])
def test_stream_equals_predict_for_any_clip_and_stride(affect, tiny, clip, pools):
    # a frame's estimate interpolates the windows either side of it: with a stride longer than
    # half a clip the later window ends after the frame's own clip does, and the rows must wait
    other = _random_trunk(affect, clip, pools)
    frames, crops = _first_frames(affect, tiny, 100)  # longer than the stream's buffers
    for lagged in (False, True):
        batch = other.predict_crops(crops, causal=not lagged, lagged=lagged)
        rows = list(other.stream(frames, lagged=lagged))
        assert [r.index for r in rows] == list(range(len(frames)))
        np.testing.assert_allclose([[r.valence, r.arousal_upper] for r in rows],
                                   np.column_stack([batch.mean[:, 0], batch.upper[:, 1]]),
                                   atol=1e-4)


def test_predict_and_stream_run_under_a_callers_inference_mode(affect, tiny):
    free = affect.predict(tiny.video(), causal=True)
    with torch.inference_mode():  # a notebook habit: the prior's centre still gets its Jacobian
        inside = affect.predict(tiny.video(), causal=True)
        first = next(iter(affect.stream(tiny.video())))
    np.testing.assert_allclose(inside.mean, free.mean, atol=1e-6)
    assert np.isfinite(first.valence)


def test_seeds_torch_would_take_alike_draw_apart():
    from coreaffect.devices import torch_seed

    assert [torch_seed(s) for s in (0, 1, 2**32 - 1)] == [0, 1, 2**32 - 1]  # kept as they were
    folded = {torch_seed(s) for s in (2**32, 2**32 + 1, 2**40, 2**63 - 1)}
    assert len(folded) == 4 and all(0 <= s < 2**32 for s in folded) and 0 not in folded
    draws = [torch.rand(3, generator=torch.Generator().manual_seed(torch_seed(s)))
             for s in (0, 2**32)]
    assert not torch.equal(*draws)


def test_bad_arguments_are_named_before_any_work(tiny, caplog, tmp_path):
    from coreaffect.errors import InputError

    for kwargs, message in (({"band_scale": 2.0}, "band_scale must map stages"),
                            ({"chunk_frames": 7}, "chunk_frames must be at least"),
                            ({"folder_format": "bogus"}, "folder_format must be one of"),
                            ({"lag": "8"}, "lag")):
        with pytest.raises(CoreAffectError, match=message):
            CoreAffect.load(tiny.run, **kwargs)
    assert "instead of the run's" not in caplog.text  # no warning naming a lag refused
    off = CoreAffect.load(tiny.run, lag=None)  # no lagged stage: nothing to warn of
    assert off.lag is None and "instead of the run's" not in caplog.text
    with pytest.raises(InputError, match="a video must be a file or folder path"):
        off.predict(np.zeros((20, 64, 64, 3), np.uint8))
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(2):
        cv2.imwrite(str(folder / f"{k:05d}.png"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(CoreAffectError, match="fps must be a finite number > 0.*got 0"):
        off.open_video(folder, fps=0)  # not the run's rate in its place
    assert repr(off) == "CoreAffect('lite', stages: raw, prior, dynamics, lag=None, device='cpu')"
    trajectory = off.predict(tiny.video(), causal=True)
    assert repr(trajectory).startswith("AffectTrajectory(stage='filtered', level=0.9, ")
    assert len(repr(trajectory)) < 120


def test_the_run_keeps_its_training_videos_frame_rate(affect, tiny):
    assert affect.frame_rate == 25.0  # the synthetic corpus's rate
    assert CoreAffect.load(tiny.run, frame_rate=None).frame_rate is None
    with pytest.raises(CoreAffectError, match="frame_rate must be .* > 0, or None, got 0"):
        CoreAffect(affect.model, affect.data_config, frame_rate=0)


def _rate_warnings(affect, video, fps):
    """The frame-rate warnings of predicting ``video`` read at ``fps`` (a rate that replaces
    the file's own, which is warned of too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with affect.open_video(video, fps=fps) as opened:
            affect.predict(opened)
    return [w for w in caught if "per second" in str(w.message)]


def test_predict_warns_of_a_video_at_another_rate_than_training(affect, tiny):
    assert not _rate_warnings(affect, tiny.video(), 30)  # within a quarter of 25
    assert not _rate_warnings(affect, tiny.video(), 20)
    (faster,) = _rate_warnings(affect, tiny.video(), 60)
    assert re.search(r"synth000.avi: 60 frames per second, while the run's network was trained "
                     r"on videos at 25: its 16-frame clips span 0\.27 s here, not the 0\.64 s"
                     r".*resample to 25 fps", str(faster.message))
    assert faster.filename == __file__
    (slower,) = _rate_warnings(affect, tiny.video(), 15)
    assert "16-frame clips span 1.07 s here" in str(slower.message)


def test_stream_warns_once_of_frames_at_another_rate_than_training(affect, tiny):
    frames, _ = _first_frames(affect, tiny, 40)

    def at(rate, count):
        return [(image, k / rate) for k, (image, _) in enumerate(frames[:count])]

    with warnings.catch_warnings():
        warnings.simplefilter("error", CoreAffectWarning)
        list(affect.stream(at(25, 40)))
        list(affect.stream(at(22, 40)))
    with pytest.warns(CoreAffectWarning, match="the stream: 50 frames per second") as caught:
        rows = list(affect.stream(at(50, 40)))
    assert len(rows) == 40 and len([w for w in caught if "per second" in str(w.message)]) == 1
    assert caught[0].filename == __file__
    with pytest.warns(CoreAffectWarning, match="the stream: 50 frames per second"):
        list(affect.stream(at(50, 20)))  # shorter than the frames checked: at its end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(affect.stream(at(50, 10)))  # shorter than a clip: no estimate to be off
    assert not [w for w in caught if "per second" in str(w.message)]
    # 25 a second, read in bursts of 4 (a camera's buffer after slow frames): no warning
    bursts = [(image, (k // 4) * 0.16 + (k % 4) * 1e-4) for k, (image, _) in enumerate(frames)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(affect.stream(bursts))
    assert not [w for w in caught if "per second" in str(w.message)]


def test_one_warning_names_every_video_at_another_rate(affect):
    frames = np.arange(40)
    videos = {"a": (frames / 25, frames), "b": (frames / 60, frames), "c": (frames / 29.97, frames),
              "d": (frames / 1000, frames), "e": (np.zeros(1), np.zeros(1, int))}
    with pytest.warns(CoreAffectWarning, match=r"^2 of 5 videos run at another frame rate than "
                      r"the 25 frames per second .*: b \(60\), d \(1000\); resample them"):
        rates = affect.check_frame_rates(videos)
    assert rates == {"a": 25.0, "b": 60.0, "c": 29.97, "d": 1000.0, "e": None}
    off = copy.copy(affect)
    off.frame_rate = 29.97
    with pytest.warns(CoreAffectWarning, match=r"b: 60 frames per second, while the run's "
                      r"network was trained on videos at 29.97: .* fps=29.97 OUT"):
        off.check_frame_rates({"b": videos["b"]})
