"""Private helpers of :mod:`coreaffect.synthetic`: people, backgrounds, frames, noise, events.

Faces are drawn with OpenCV polygons in *face units*: the face ellipse is 1 unit tall (crown to
chin), the origin is its centre, x points right and y down. A 2x2 matrix (roll and scale) and a
translation map face units to frame pixels; polygons are filled with 4 fractional bits, so that
sub-pixel motion stays smooth. A head turn (yaw, pitch) shifts each feature in proportion to its
depth (the nose most, the outline not at all). Everything here is deterministic given its
inputs; randomness comes only from the generator passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

__all__ = ["FrameState", "Identity", "accept_scene", "ar1", "draw_frame", "events", "expose",
           "gradient_image", "noise_bank", "probe_states", "render_background",
           "sample_identity", "smooth"]

_SHIFT = 4  # fractional bits of polygon vertices
_ONE = 1 << _SHIFT
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 40, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 40, endpoint=False))], axis=1)  # (40, 2)
_U = np.linspace(-1.0, 1.0, 15)  # parameter along eyes, brows and lips

# Skin tones (BGR) from light to dark; identities interpolate between neighbours.
_SKIN = np.array([[175, 200, 240], [140, 170, 220], [105, 140, 190], [75, 105, 150],
                  [55, 80, 120]], dtype=np.float64)
# Hair colours (BGR): black, dark brown, brown, auburn, ash.
_HAIR = np.array([[20, 20, 25], [25, 40, 60], [40, 65, 100], [30, 50, 120], [60, 60, 65]],
                 dtype=np.float64)


class Identity(NamedTuple):
    """The fixed look of one synthetic person (all lengths in face units)."""

    skin: np.ndarray  # (3,) BGR
    hair: np.ndarray  # (3,) BGR
    shirt: np.ndarray  # (3,) BGR
    lips: np.ndarray  # (3,) BGR
    iris: np.ndarray  # (3,) BGR
    width: float  # face ellipse width / height
    eye_dx: float  # half distance between the eye centres
    eye_y: float  # height of the eye centres
    eye_w: float  # eye width
    eye_h: float  # open-eye height
    brow_gap: float  # eye centre to brow
    brow_thick: float
    nose_y: float  # height of the nostrils
    mouth_y: float  # height of the mouth line
    mouth_w: float  # mouth width
    lip: float  # lip thickness
    mouth_rest: float  # resting mouth opening (the talking oscillation is centred on it)
    hairline: float  # height of the hairline
    fringe: float  # how far the hairline dips in its middle
    neck_w: float  # neck width


def _luma(bgr: np.ndarray) -> float:
    return float(bgr @ np.array([0.114, 0.587, 0.299]))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a random identity (face shape, skin tone, feature placement, colours)."""
    tone = rng.uniform(0, len(_SKIN) - 1)
    low = int(tone)
    skin = _SKIN[low] + (tone - low) * (_SKIN[min(low + 1, len(_SKIN) - 1)] - _SKIN[low])
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    hair *= min(1.0, 0.55 * _luma(skin) / _luma(hair))  # hair darker than the skin in grey
    return Identity(
        skin=skin * rng.uniform(0.95, 1.05, size=3),
        hair=np.clip(hair, 0, 255),
        shirt=rng.uniform(30, 230, size=3),
        lips=skin * np.array([0.62, 0.6, 0.85]) * rng.uniform(0.85, 1.0),
        iris=rng.uniform(20, 90, size=3),
        width=rng.uniform(0.70, 0.80),
        eye_dx=rng.uniform(0.165, 0.195),
        eye_y=rng.uniform(-0.07, -0.03),
        eye_w=rng.uniform(0.12, 0.145),
        eye_h=rng.uniform(0.045, 0.06),
        brow_gap=rng.uniform(0.075, 0.095),
        brow_thick=rng.uniform(0.022, 0.034),
        nose_y=rng.uniform(0.13, 0.17),
        mouth_y=rng.uniform(0.28, 0.32),
        mouth_w=rng.uniform(0.22, 0.28),
        lip=rng.uniform(0.014, 0.022),
        mouth_rest=rng.uniform(0.03, 0.045),
        hairline=rng.uniform(-0.33, -0.26),
        fringe=rng.uniform(0.0, 0.06),
        neck_w=rng.uniform(0.32, 0.40),
    )


class FrameState(NamedTuple):
    """Everything that changes from frame to frame (lengths in face units, angles in radians)."""

    cx: float  # face centre in frame pixels
    cy: float
    size: float  # face height in pixels
    roll: float  # in-plane head rotation
    yaw: float  # left-right head turn in [-1, 1] (features shift sideways)
    pitch: float  # up-down head nod in [-1, 1] (features shift vertically)
    smile: float  # mouth-corner lift in [-1, 1] (valence)
    brow: float  # in [-1, 1]: < 0 raises the inner ends (sad), > 0 lifts the brows (valence)
    cheek: float  # cheek raise in [0, 1] (positive valence)
    eye_open: float  # eyelid opening, 1 = the identity's open eye, 0 = closed (blink)
    mouth_open: float  # lip separation in face units
    torso_dx: float  # torso offset from below the face, pixels
    torso_dy: float
    gain: float  # global illumination gain
    gradient: float  # weight of the illumination gradient in [-1, 1]
    occluder: int  # 0 none, 1 bar, 2 hand
    occ_x: float  # occluder position in face units
    occ_y: float


def _bgr(color: np.ndarray, factor: float = 1.0) -> tuple[float, float, float]:
    b, g, r = color.tolist() if isinstance(color, np.ndarray) else color
    return min(b * factor, 255.0), min(g * factor, 255.0), min(r * factor, 255.0)


def _ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return _CIRCLE * (ax, ay) + (cx, cy)  # (40, 2)


def accept_scene(cascade: cv2.CascadeClassifier, background: np.ndarray, who: Identity,
                 probes: Sequence[FrameState]) -> bool:
    """Whether a person on a background gives the detector one face, the right one.

    The background alone must hold no face; on every probe frame the face must be detected with
    at least 5 neighbouring hits (the data path's setting) and nothing else of at least half its
    size with 3 or more (a detector tracking the face gates out anything much smaller).
    """
    if len(_detect(cascade, background, 24)[0]):
        return False
    for state in probes:
        image = draw_frame(background, who, state)
        boxes, votes = _detect(cascade, image, int(0.45 * state.size))
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        near = np.hypot(*(centres - (state.cx, state.cy)).T) < 0.4 * state.size
        near &= (boxes[:, 2] > 0.5 * state.size) & (boxes[:, 2] < 1.4 * state.size)
        if not (near & (votes >= 5)).any() or not near.all():
            return False
    return True


def probe_states(first: FrameState, width: int, face_size: float) -> list[FrameState]:
    """Frames a scene must pass: drift extremes, extreme expressions, a blink, turns, scales."""
    base = first._replace(occluder=0, roll=0.0, yaw=0.0, pitch=0.0, size=float(face_size))
    sad = {"smile": -1.0, "brow": -1.0, "cheek": 0.0}
    glad = {"smile": 1.0, "brow": 1.0, "cheek": 1.0}
    changes = [
        {"cx": 0.3 * width, "yaw": -0.6, **sad},
        {"cx": 0.7 * width, "yaw": 0.6, **glad},
        {"cx": 0.5 * width, "smile": 0.0, "brow": 0.0, "cheek": 0.0, "eye_open": 0.0,
         "pitch": 0.6},
        {"cx": 0.5 * width, "pitch": -0.6, "size": 1.1 * base.size, **sad},
        {"cx": 0.5 * width, "roll": 0.1, "size": 0.9 * base.size, **glad},
        {"cx": 0.4 * width, "smile": -0.5, "brow": -0.5, "cheek": 0.0, "mouth_open": 0.08,
         "roll": -0.1},
    ]
    return [base._replace(**change) for change in changes]


def _detect(cascade: cv2.CascadeClassifier, image: np.ndarray,
            smallest: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes (x, y, w, h) found with 3 neighbours, and (N,) their neighbour counts."""
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    found, votes = cascade.detectMultiScale2(gray, 1.1, 3, minSize=(smallest, smallest))
    return (np.asarray(found, dtype=np.float64).reshape(-1, 4),
            np.asarray(votes, dtype=np.int64).reshape(-1))


def render_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A cluttered static background ``(H, W, 3)`` uint8 BGR.

    A two-colour gradient, random rectangles, circles, lines and striped panels, and a
    low-frequency texture, blurred a little.
    """
    a, b = rng.uniform(40, 220, size=(2, 3))
    ramp = np.linspace(0, 1, width if rng.random() < 0.5 else height)
    ramp = ramp[None, :, None] if len(ramp) == width else ramp[:, None, None]
    image = np.broadcast_to(a + (b - a) * ramp, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(12, 30))):
        color = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        x, y = rng.uniform(-0.1, 1.1, size=2) * (width, height)
        kind = rng.integers(4)
        if kind == 0:
            w, h = rng.uniform(0.05, 0.4, size=2) * (width, height)
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), color, -1)
        elif kind == 1:
            cv2.circle(image, (int(x), int(y)), int(rng.uniform(0.02, 0.15) * width), color, -1,
                       cv2.LINE_AA)
        elif kind == 2:
            x2, y2 = rng.uniform(0, 1, size=2) * (width, height)
            cv2.line(image, (int(x), int(y)), (int(x2), int(y2)), color,
                     int(rng.integers(1, 6)), cv2.LINE_AA)
        else:
            step = int(rng.integers(4, 12))
            w, h = rng.uniform(0.1, 0.3, size=2) * (width, height)
            for k in range(0, int(w), step):  # a striped panel (texture)
                cv2.line(image, (int(x + k), int(y)), (int(x + k), int(y + h)), color, 1)
    texture = rng.normal(0, rng.uniform(5, 15), size=(height // 8 + 1, width // 8 + 1, 1))
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    image = np.clip(image + texture, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.5))


class _Pen:
    """Fills polygons given in face units on one image (a frame, or a region of it)."""

    def __init__(self, image: np.ndarray, state: FrameState, origin: tuple[int, int] = (0, 0),
                 antialias: bool = True) -> None:
        self.image = image
        self.size = state.size
        c, s = np.cos(state.roll), np.sin(state.roll)
        self.matrix = state.size * np.array([[c, -s], [s, c]])  # face units -> pixels
        self.centre = np.array([state.cx - origin[0], state.cy - origin[1]])
        self.turn = np.array([0.07 * state.yaw, 0.05 * state.pitch])
        self.kind = cv2.LINE_AA if antialias else cv2.LINE_8

    def points(self, pts: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Fixed-point pixel coordinates of (N, 2) face-unit points.

        ``depth`` scales the sideways and vertical shift of a head turn: 0 for the outline, about
        1 for the nose tip.
        """
        return np.round(((pts + depth * self.turn) @ self.matrix.T + self.centre)
                        * _ONE).astype(np.int32)

    def fill(self, pts: np.ndarray, color: tuple[float, ...], depth: float = 0.0) -> None:
        cv2.fillPoly(self.image, [self.points(pts, depth)], color, self.kind, _SHIFT)

    def line(self, pts: np.ndarray, color: tuple[float, ...], width: float,
             depth: float = 0.0) -> None:
        thickness = max(1, int(round(width * self.size)))
        cv2.polylines(self.image, [self.points(pts, depth)], False, color, thickness,
                      self.kind, _SHIFT)


def _draw_torso(image: np.ndarray, who: Identity, state: FrameState) -> None:
    """Shoulders and chest below the head (upright, following the torso offsets)."""
    size = state.size
    x0, y0 = state.cx + state.torso_dx, state.cy + state.torso_dy
    u = np.array([[-0.18, 0.55], [0.18, 0.55], [0.45, 0.68], [0.9, 0.82], [1.05, 2.0],
                  [-1.05, 2.0], [-0.9, 0.82], [-0.45, 0.68]])
    pts = np.round((u * size + (x0, y0)) * _ONE).astype(np.int32)
    cv2.fillPoly(image, [pts], _bgr(who.shirt), cv2.LINE_AA, _SHIFT)
    collar = np.array([[-0.2, 0.58], [0.0, 0.74], [0.2, 0.58]])
    pts = np.round((collar * size + (x0, y0)) * _ONE).astype(np.int32)
    cv2.polylines(image, [pts], False, _bgr(who.shirt, 0.6), max(1, int(size * 0.02)),
                  cv2.LINE_AA, _SHIFT)


def _head_shapes(who: Identity) -> list[tuple[np.ndarray, float, tuple[float, ...]]]:
    """Neck, hair mass, ears and face outline: (points, turn depth, colour), back to front."""
    half, neck = who.width / 2, who.neck_w / 2
    shapes = [(np.array([[-neck, 0.2], [neck, 0.2], [neck * 1.1, 0.75], [-neck * 1.1, 0.75]]),
               0.0, _bgr(who.skin, 0.7)),
              (_ellipse(0, -0.06, half + 0.05, 0.52), 0.0, _bgr(who.hair))]
    shapes += [(_ellipse(side * half, -0.01, 0.05, 0.09), -0.3 * side, _bgr(who.skin, 0.8))
               for side in (-1, 1)]
    return shapes + [(_ellipse(0, 0, half, 0.5), 0.0, _bgr(who.skin, 0.78))]


def _draw_skin(pen: _Pen, who: Identity, state: FrameState) -> None:
    """The head's shapes, then the face's soft highlights and shadows (blurred afterwards)."""
    half = who.width / 2
    for pts, depth, color in _head_shapes(who):
        pen.fill(pts, color, depth)
    pen.fill(_ellipse(0, 0.02, half * 0.86, 0.44), _bgr(who.skin, 0.93), depth=0.3)
    for side in (-1, 1):  # bright cheeks, raised with the smile
        pen.fill(_ellipse(side * 0.16, 0.1 - 0.03 * state.cheek, 0.11, 0.08),
                 _bgr(who.skin, 1.06 + 0.05 * state.cheek), depth=0.5)
        pen.fill(_ellipse(side * who.eye_dx, who.eye_y, who.eye_w * 0.8, who.eye_w * 0.5),
                 _bgr(who.skin, 0.55), depth=0.6)  # eye socket shadow
    pen.fill(_ellipse(0, who.eye_y + 0.1, 0.04, 0.13), _bgr(who.skin, 1.12), depth=0.9)  # bridge
    pen.fill(_ellipse(0, -0.22, 0.16, 0.07), _bgr(who.skin, 1.05), depth=0.4)  # forehead
    pen.fill(_ellipse(0, who.mouth_y + 0.1, 0.1, 0.04), _bgr(who.skin, 0.85), depth=0.5)  # chin


def _draw_hair_cap(pen: _Pen, who: Identity) -> None:
    half = who.width / 2 + 0.02
    top = np.linspace(np.pi * 1.08, np.pi * 1.92, 25)
    arc = np.stack([half * np.cos(top), 0.52 * np.sin(top) - 0.01], axis=1)
    left, right = arc[0, 0], arc[-1, 0]
    xs = np.linspace(right, left, 15)
    dip = who.fringe * (1 - (2 * (xs - (left + right) / 2) / (right - left)) ** 2)
    line = np.stack([xs, who.hairline + dip], axis=1)
    pen.fill(np.concatenate([arc, line]), _bgr(who.hair))


def _draw_features(pen: _Pen, who: Identity, state: FrameState) -> None:
    """Brows, eyes, nose, cheek folds and mouth, with their expression parameters."""
    dark = _bgr(np.minimum(who.hair * 0.8, who.skin * 0.4))  # brows darker than any skin
    for side in (-1, 1):
        ex = side * who.eye_dx
        # Brows: the inner ends rise for sadness (brow < 0), the whole brow lifts for brow > 0
        inner, outer = ex - side * who.eye_w * 0.55, ex + side * who.eye_w * 0.75
        by = who.eye_y - who.brow_gap
        sad, glad = max(-state.brow, 0.0), max(state.brow, 0.0)
        yi, yo = by - 0.03 * sad - 0.015 * glad, by + 0.01 * sad - 0.015 * glad
        t = who.brow_thick
        mid_x, mid_y = (inner + outer) / 2, (yi + yo) / 2 - 0.01  # the brow arches up
        brow = np.array([[inner, yi - t / 2], [mid_x, mid_y - t * 0.8], [outer, yo - t / 3],
                         [outer, yo + t / 3], [mid_x, mid_y + t * 0.4], [inner, yi + t / 2]])
        pen.fill(brow, dark, depth=0.6)
        # Eye: almond of lids; the lower lid rises with the cheek
        opening = who.eye_h * state.eye_open
        x = ex + _U * who.eye_w / 2
        bulge = np.sqrt(1 - _U ** 2)
        upper = np.stack([x, who.eye_y - opening * bulge], axis=1)
        lower = np.stack([x, who.eye_y + opening * 0.55 * (1 - 0.4 * state.cheek) * bulge], axis=1)
        if state.eye_open > 0.15:
            pen.fill(np.concatenate([upper, lower[::-1]]), _bgr(np.array([205, 210, 215]), 0.75),
                     depth=0.6)
            radius = min(who.eye_w * 0.32, opening * 0.8)
            pen.fill(_ellipse(ex, who.eye_y - opening * 0.1, who.eye_w * 0.32, radius),
                     _bgr(who.iris), depth=0.65)
            pen.fill(_ellipse(ex, who.eye_y - opening * 0.1, who.eye_w * 0.13,
                              min(who.eye_w * 0.13, radius)), (10, 10, 10), depth=0.65)
        pen.line(upper, (25, 25, 30), 0.013, depth=0.6)
        # Cheek fold from the nose wing to beyond the mouth corner, deeper with a smile
        fold = np.array([[side * 0.06, who.nose_y - 0.01],
                         [side * (who.mouth_w / 2 + 0.02), who.mouth_y - 0.04],
                         [side * (who.mouth_w / 2 + 0.045), who.mouth_y + 0.04]])
        pen.line(fold, _bgr(who.skin, 0.9 - 0.25 * state.cheek), 0.008 + 0.008 * state.cheek,
                 depth=0.7)
        pen.fill(_ellipse(side * 0.033, who.nose_y, 0.02, 0.011), _bgr(who.skin, 0.45), depth=0.95)
    # Mouth: centre line y = mouth_y - lift * u^2 (corners up for a smile, which also parts the
    # lips and shows the upper teeth)
    glad = max(state.smile, 0.0)
    lift = 0.07 * state.smile
    half = who.mouth_w / 2 * (1 + 0.12 * glad)
    x = _U * half
    shape = np.sqrt(1 - _U ** 2)
    centre = who.mouth_y - lift * _U ** 2
    gap = (state.mouth_open + 0.025 * glad) / 2 * shape
    outer_up = np.stack([x, centre - gap - who.lip * shape - 0.004], axis=1)
    outer_down = np.stack([x, centre + gap + who.lip * 1.3 * shape + 0.004], axis=1)
    pen.fill(np.concatenate([outer_up, outer_down[::-1]]), _bgr(who.lips), depth=0.8)
    top = np.stack([x, centre - gap], 1)
    pen.fill(np.concatenate([top, np.stack([x, centre + gap], 1)[::-1]]), (25, 20, 35), depth=0.8)
    if glad > 0.1:
        teeth = np.stack([x * 0.85, centre - gap + 1.2 * gap * min(1.0, 2 * glad)], 1)[::-1]
        pen.fill(np.concatenate([top * (0.85, 1), teeth]), _bgr(np.array([200, 210, 215]), 0.9),
                 depth=0.8)
    pen.line(np.stack([x, centre], axis=1), (30, 25, 40), 0.008, depth=0.8)


def _draw_occluder(pen: _Pen, who: Identity, state: FrameState) -> None:
    if state.occluder == 1:  # a bar (a held object) sweeping across the face
        pen.fill(np.array([[state.occ_x - 0.09, -0.7], [state.occ_x + 0.09, -0.7],
                           [state.occ_x + 0.09, 0.8], [state.occ_x - 0.09, 0.8]]),
                 _bgr(255 - who.shirt), depth=1.0)
    elif state.occluder == 2:  # a hand raised over the mouth and chin
        x, y = state.occ_x, state.occ_y
        pen.fill(_ellipse(x, y, 0.17, 0.12), _bgr(who.skin, 0.95), depth=1.0)
        for k in range(4):
            fx = x - 0.12 + 0.08 * k
            pen.fill(np.array([[fx - 0.03, y - 0.05], [fx + 0.03, y - 0.05],
                               [fx + 0.025, y - 0.2 + 0.02 * abs(k - 1.5)],
                               [fx - 0.025, y - 0.2 + 0.02 * abs(k - 1.5)]]),
                     _bgr(who.skin, 0.9), depth=1.0)
        pen.fill(np.array([[x - 0.12, y + 0.05], [x + 0.12, y + 0.05], [x + 0.1, y + 0.6],
                           [x - 0.1, y + 0.6]]), _bgr(who.skin, 0.85), depth=1.0)


def draw_frame(background: np.ndarray, who: Identity, state: FrameState,
               blur: float = 0.7) -> np.ndarray:
    """Draw one frame ``(H, W, 3)`` uint8 BGR (before illumination and sensor noise).

    The head is drawn in layers: skin, hair mass and soft shadows on a copy of the head's region,
    blurred (smooth shading) and pasted back through the head's silhouette; then the hair cap, the
    features and any occluder, crisp; finally the head's region is softened a little (optics).

    Args:
        background: ``(H, W, 3)`` uint8 BGR, not modified.
        who: The person.
        state: Pose, expression, torso and occluder of this frame.
        blur: Standard deviation, in pixels, of the final softening of the head's region.
    """
    image = background.copy()
    height, width = image.shape[:2]
    _draw_torso(image, who, state)
    reach = 0.8 * state.size
    x0, x1 = max(0, int(state.cx - reach)), min(width, int(state.cx + reach) + 1)
    y0, y1 = max(0, int(state.cy - reach)), min(height, int(state.cy + reach) + 1)
    if x1 - x0 > 4 and y1 - y0 > 4:
        roi = image[y0:y1, x0:x1]  # (h, w, 3) view of the head's region
        layer = roi.copy()
        _draw_skin(_Pen(layer, state, (x0, y0)), who, state)
        k = 2 * int(0.035 * state.size) + 1  # two box blurs: nearly Gaussian, fast, and exact
        cv2.blur(layer, (k, k), dst=layer)  # in integers (the same result with any thread count)
        cv2.blur(layer, (k, k), dst=layer)
        mask = np.zeros(roi.shape[:2], dtype=np.uint8)
        outline = _Pen(mask, state, (x0, y0), antialias=False)
        for pts, depth, _ in _head_shapes(who):
            outline.fill(pts, (255,), depth)
        cv2.copyTo(layer, mask, roi)
    pen = _Pen(image, state)
    _draw_hair_cap(pen, who)
    _draw_features(pen, who, state)
    if state.occluder:
        _draw_occluder(pen, who, state)
    if blur > 0 and x1 - x0 > 4 and y1 - y0 > 4:  # the background is soft already
        roi = image[y0:y1, x0:x1]
        cv2.GaussianBlur(roi, (0, 0), blur, dst=roi)
    return image


# ---------------------------------------------------------------------------------------------
# Noise processes and the camera


def ar1(rng: np.random.Generator, n: int, dt: float, tau: float, dims: int = 1) -> np.ndarray:
    """(n, dims) stationary AR(1) noise of unit variance and time constant ``tau`` seconds.

    The exact sampling of an OU process: rough paths, independent from step to step beyond tau.
    """
    rho = np.exp(-dt / tau)
    eps = rng.standard_normal((n, dims))
    out = eps.copy()
    if n > 1:
        out[1:] = lfilter([np.sqrt(1 - rho ** 2)], [1.0, -rho], eps[1:], axis=0,
                          zi=rho * eps[:1])[0]
    return out


def smooth(rng: np.random.Generator, n: int, dt: float, scale: float, dims: int = 1) -> np.ndarray:
    """(n, dims) smooth noise of unit variance: white noise through a Gaussian of ``scale`` s.

    Unlike AR(1) paths these are smooth, so slow nuisance motion changes little from one frame
    to the next and frame differences are left to the arousal cues.
    """
    sigma = scale / dt  # in frames
    pad = int(4 * sigma) + 1
    noise = rng.standard_normal((n + 2 * pad, dims))
    out = gaussian_filter1d(noise, sigma, axis=0, mode="nearest")[pad:pad + n]
    return out * np.sqrt(2 * np.sqrt(np.pi) * sigma)  # filtered variance is 1 / (2 sqrt(pi) sigma)


def noise_bank(rng: np.random.Generator, sigma: float, shape: tuple[int, ...],
               count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts ``(count, H, W, 3)`` uint8 of Gaussian noise images."""
    noise = np.rint(sigma * rng.standard_normal((count, *shape), dtype=np.float32))
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


def gradient_image(angle: float, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 linear ramp around 128 along ``angle`` (an illumination gradient)."""
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5)
    return np.repeat(np.clip(128 + 180 * ramp, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def expose(image: np.ndarray, state: FrameState, gradient: np.ndarray, positive: np.ndarray,
           negative: np.ndarray) -> np.ndarray:
    """Illumination (gain and gradient) and sensor noise, in place on ``(H, W, 3)`` uint8."""
    w = state.gradient
    cv2.addWeighted(image, state.gain, gradient, w, -128.0 * w, dst=image)
    cv2.add(image, positive, dst=image)
    cv2.subtract(image, negative, dst=image)
    return image


def events(rng: np.random.Generator, rate: float, seconds: float, low: float, high: float,
           taken: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-overlapping (start, end) times of a Poisson number of events lasting [low, high] s."""
    found: list[tuple[float, float]] = []
    for _ in range(int(rng.poisson(rate * seconds / 60.0))):
        length = rng.uniform(low, high)
        if seconds - length - 1.5 <= 1.0:  # the first second and the last 1.5 s stay clear
            continue
        for _try in range(10):
            start = rng.uniform(1.0, seconds - length - 1.5)
            if all(start > b + 0.5 or start + length < a - 0.5 for a, b in taken + found):
                found.append((start, start + length))
                break
    return found
