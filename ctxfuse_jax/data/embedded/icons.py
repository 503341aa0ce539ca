"""The 24 object classes as vector pictograms, drawn in a unit frame x, y in [-1, 1] (y down).

An icon is a sequence of parts (filled polygons and thick polylines) painted in order, each with a
colour *role*; roles get random colours per example, so colour never tells the class. Classes are
told apart by parts and markings a few pixels wide (fork tines, racket strings, spider legs, shell
spirals, windows), which is exactly what blur removes, while coarse silhouettes (round, long, tall)
recur across supercategories, so a blurred object does not give its supercategory away either.

`clip=True` marks a marking: it only paints over what is already drawn, so stripes and spots
never change the silhouette. The role `CUT` erases (holes in wheels, handles and rackets).
"""

import dataclasses
import enum
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]


class Paint(enum.IntEnum):
    """Colour roles; the renderer picks one colour per role and example."""

    CUT = 0
    BODY = 1
    DARK = 2
    LIGHT = 3
    ACCENT = 4


BODY, DARK, LIGHT, ACCENT, CUT = Paint.BODY, Paint.DARK, Paint.LIGHT, Paint.ACCENT, Paint.CUT
_ARC_POINTS = 40  # vertices of a full ellipse; enough for 224 px renders


@dataclasses.dataclass(frozen=True)
class Part:
    """One filled polygon of an icon, or a polyline with round joints and caps when `width` > 0."""

    points: np.ndarray  # (n, 2) float, x and y in the unit frame
    paint: Paint
    clip: bool = False
    width: float = 0.0


Icon = tuple[Part, ...]


def polygon(points: Sequence[Point], paint: Paint = BODY, clip: bool = False) -> list[Part]:
    return [Part(np.asarray(points, np.float64), paint, clip)]


def rect(x0: float, y0: float, x1: float, y1: float, paint: Paint = BODY, clip: bool = False) -> list[Part]:
    return polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], paint, clip)


def ellipse(cx: float, cy: float, rx: float, ry: float, paint: Paint = BODY, clip: bool = False,
            angle: float = 0.0) -> list[Part]:
    """An ellipse with radii `rx`, `ry`, turned by `angle` degrees."""
    t = np.linspace(0.0, 2 * np.pi, _ARC_POINTS, endpoint=False)
    return polygon(_rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], 1), angle) + (cx, cy), paint, clip)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> list[Point]:
    """Points along an ellipse from `start` to `stop` degrees (0 = +x, 90 = +y, i.e. down)."""
    t = np.radians(np.linspace(start, stop, max(3, int(_ARC_POINTS * abs(stop - start) / 360))))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]


def stroke(points: Sequence[Point], width: float, paint: Paint = DARK, clip: bool = False) -> list[Part]:
    """A polyline of the given width with round joints and caps."""
    return [Part(np.asarray(points, np.float64), paint, clip, width)]


def mirrored(parts: list[Part]) -> list[Part]:
    """The parts and their mirror image about x = 0."""
    return parts + [dataclasses.replace(p, points=p.points * (-1, 1)) for p in parts]


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return points @ np.array([[c, s], [-s, c]])


def _regular(cx: float, cy: float, radius: float, sides: int, angle: float = -90.0) -> list[Point]:
    """Vertices of a regular polygon, the first one at `angle` degrees."""
    t = np.radians(angle + 360.0 * np.arange(sides) / sides)
    return list(zip(cx + radius * np.cos(t), cy + radius * np.sin(t)))


def _wheel(cx: float, cy: float, r: float) -> list[Part]:
    return ellipse(cx, cy, r, r, DARK) + ellipse(cx, cy, 0.42 * r, 0.42 * r, LIGHT)


def _fish() -> list[Part]:
    return (polygon([(0.45, 0.0), (1.0, -0.5), (0.88, 0.0), (1.0, 0.5)])
            + polygon([(-0.4, -0.3), (-0.05, -0.65), (0.25, -0.3)])
            + ellipse(-0.15, 0.0, 0.7, 0.38)
            + rect(-0.15, -0.5, -0.02, 0.5, ACCENT, clip=True) + rect(0.2, -0.5, 0.3, 0.5, ACCENT, clip=True)
            + stroke([(-0.42, -0.27), (-0.32, 0.0), (-0.42, 0.27)], 0.06, DARK, clip=True)
            + ellipse(-0.6, -0.08, 0.1, 0.1, LIGHT) + ellipse(-0.62, -0.08, 0.05, 0.05, DARK))


def _bird() -> list[Part]:
    return (polygon([(0.35, 0.05), (1.0, -0.25), (1.0, 0.2)])
            + stroke([(-0.1, 0.4), (-0.15, 0.85), (-0.3, 0.88)], 0.05)
            + stroke([(0.15, 0.4), (0.15, 0.85), (0.0, 0.88)], 0.05)
            + ellipse(0.0, 0.1, 0.55, 0.38) + ellipse(-0.5, -0.35, 0.27, 0.27)
            + polygon([(-0.72, -0.45), (-1.0, -0.33), (-0.72, -0.25)], ACCENT)
            + polygon([(-0.25, 0.0), (0.45, -0.15), (0.2, 0.3)], DARK, clip=True)
            + ellipse(-0.55, -0.4, 0.06, 0.06, DARK))


def _butterfly() -> list[Part]:
    wing = (ellipse(-0.47, -0.38, 0.47, 0.4, angle=-25) + ellipse(-0.35, 0.4, 0.33, 0.3)
            + ellipse(-0.52, -0.4, 0.16, 0.16, ACCENT, clip=True) + ellipse(-0.35, 0.45, 0.1, 0.1, LIGHT, clip=True)
            + stroke([(-0.05, -0.1), (-0.8, -0.6)], 0.03, DARK, clip=True))
    antenna = stroke([(0.0, -0.45), (-0.12, -0.75), (-0.3, -0.95)], 0.04)
    return mirrored(wing) + ellipse(0.0, 0.05, 0.07, 0.55, DARK) + mirrored(antenna)


def _snail() -> list[Part]:
    turns = np.linspace(0.0, 4 * np.pi, 60)
    spiral = [(0.2 + r * np.cos(t), -0.05 + r * np.sin(t)) for t, r in zip(turns, np.linspace(0.5, 0.04, 60))]
    return (ellipse(-0.1, 0.55, 0.88, 0.15, LIGHT)
            + stroke([(-0.8, 0.5), (-0.92, 0.0)], 0.05, LIGHT) + stroke([(-0.62, 0.5), (-0.65, 0.05)], 0.05, LIGHT)
            + ellipse(-0.92, 0.0, 0.06, 0.06, DARK) + ellipse(-0.65, 0.05, 0.06, 0.06, DARK)
            + ellipse(0.2, -0.05, 0.58, 0.55) + stroke(spiral, 0.06, DARK, clip=True))


def _turtle() -> list[Part]:
    hexagon = _regular(0.0, 0.0, 0.24, 6, angle=0.0)
    rim = _regular(0.0, 0.0, 0.9, 6, angle=0.0)
    return (mirrored(ellipse(-0.42, -0.5, 0.17, 0.14, ACCENT) + ellipse(-0.42, 0.5, 0.17, 0.14, ACCENT))
            + ellipse(-0.82, 0.0, 0.18, 0.15, ACCENT) + polygon([(0.6, -0.06), (0.97, 0.0), (0.6, 0.06)], ACCENT)
            + ellipse(0.0, 0.0, 0.68, 0.52)
            + stroke(hexagon + hexagon[:1], 0.05, DARK, clip=True)
            + [p for a, b in zip(hexagon, rim) for p in stroke([a, b], 0.05, DARK, clip=True)]
            + ellipse(-0.88, -0.04, 0.03, 0.03, DARK))


def _spider() -> list[Part]:
    legs = []
    for angle in (-55.0, -20.0, 15.0, 50.0):
        direction = np.array([-np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        hip = np.array([0.0, -0.2])
        knee = hip + 0.55 * direction + (0.0, -0.22)
        legs += stroke([hip, knee, hip + 0.95 * direction + (0.0, 0.1)], 0.06, BODY)
    return (mirrored(legs) + ellipse(0.0, 0.3, 0.33, 0.4) + ellipse(0.0, -0.25, 0.24, 0.22)
            + polygon([(-0.12, 0.1), (0.12, 0.1), (0.0, 0.3), (0.12, 0.5), (-0.12, 0.5), (0.0, 0.3)], ACCENT, clip=True)
            + mirrored(ellipse(-0.08, -0.35, 0.04, 0.04, LIGHT)))


def _car() -> list[Part]:
    return (polygon([(-1.0, 0.05), (-0.95, -0.15), (-0.6, -0.2), (-0.35, -0.55), (0.3, -0.55), (0.55, -0.2),
                     (0.95, -0.12), (1.0, 0.05), (1.0, 0.3), (-1.0, 0.3)])
            + polygon([(-0.5, -0.22), (-0.3, -0.47), (-0.07, -0.47), (-0.07, -0.22)], LIGHT, clip=True)
            + polygon([(0.01, -0.22), (0.01, -0.47), (0.26, -0.47), (0.45, -0.22)], LIGHT, clip=True)
            + stroke([(-0.03, -0.2), (-0.03, 0.25)], 0.03, DARK, clip=True)
            + ellipse(0.93, -0.02, 0.06, 0.05, ACCENT, clip=True) + rect(-1.0, -0.08, -0.9, 0.02, ACCENT, clip=True)
            + _wheel(-0.55, 0.3, 0.24) + _wheel(0.55, 0.3, 0.24))


def _bus() -> list[Part]:
    windows = [p for x in np.linspace(-0.9, 0.25, 5) for p in rect(x, -0.45, x + 0.17, -0.12, LIGHT, clip=True)]
    return (rect(-1.0, -0.6, 1.0, 0.35) + windows
            + rect(0.72, -0.45, 0.96, -0.05, LIGHT, clip=True) + rect(0.5, -0.45, 0.64, 0.28, DARK, clip=True)
            + rect(-1.0, 0.05, 0.5, 0.13, ACCENT, clip=True)
            + _wheel(-0.6, 0.35, 0.2) + _wheel(0.65, 0.35, 0.2))


def _truck() -> list[Part]:
    ribs = [p for x in (-0.7, -0.35, 0.0) for p in stroke([(x, -0.6), (x, 0.2)], 0.04, DARK, clip=True)]
    return (rect(-1.0, -0.65, 0.3, 0.25) + ribs
            + polygon([(0.36, 0.3), (0.36, -0.4), (0.75, -0.4), (1.0, -0.05), (1.0, 0.3)], ACCENT)
            + polygon([(0.46, -0.3), (0.71, -0.3), (0.88, -0.07), (0.46, -0.07)], LIGHT, clip=True)
            + rect(-1.0, 0.22, 1.0, 0.32, DARK)
            + _wheel(-0.72, 0.35, 0.19) + _wheel(-0.32, 0.35, 0.19) + _wheel(0.7, 0.35, 0.19))


def _bicycle() -> list[Part]:
    rear, crank, seat, head, front = (-0.55, 0.3), (0.0, 0.3), (-0.15, -0.3), (0.4, -0.3), (0.55, 0.3)
    wheels = []
    for cx in (rear[0], front[0]):
        wheels += ellipse(cx, 0.3, 0.42, 0.42, DARK) + ellipse(cx, 0.3, 0.34, 0.34, CUT)
        for x, y in _regular(0.0, 0.0, 0.36, 3, angle=90.0):
            wheels += stroke([(cx - x, 0.3 - y), (cx + x, 0.3 + y)], 0.025, DARK)
    return (wheels + stroke([rear, crank, seat, rear], 0.07, BODY) + stroke([seat, head, crank], 0.07, BODY)
            + stroke([head, front], 0.07, BODY) + stroke([seat, (-0.17, -0.42)], 0.05, DARK)
            + stroke([(-0.32, -0.45), (-0.02, -0.45)], 0.1, DARK)
            + stroke([head, (0.35, -0.55), (0.55, -0.6)], 0.06, DARK)
            + stroke([crank, (0.12, 0.5)], 0.05, DARK))


def _airplane() -> list[Part]:
    windows = [p for x in np.linspace(-0.6, 0.45, 8) for p in ellipse(x, -0.05, 0.035, 0.045, LIGHT, clip=True)]
    return (polygon([(0.55, -0.05), (0.82, -0.6), (1.0, -0.6), (0.95, -0.02)])
            + ellipse(0.0, 0.0, 0.98, 0.17) + windows
            + polygon([(-0.93, -0.07), (-0.8, -0.13), (-0.7, -0.13), (-0.7, -0.04)], DARK, clip=True)
            + polygon([(-0.15, 0.05), (0.15, 0.05), (-0.15, 0.6), (-0.35, 0.6)], ACCENT)
            + polygon([(0.7, 0.02), (0.95, 0.02), (0.98, 0.2), (0.85, 0.2)], ACCENT)
            + ellipse(-0.12, 0.3, 0.15, 0.07, DARK))


def _sailboat() -> list[Part]:
    return (polygon([(-0.95, 0.4), (0.95, 0.4), (0.65, 0.75), (-0.6, 0.75)])
            + rect(-1.0, 0.5, 1.0, 0.56, LIGHT, clip=True)
            + stroke([(0.0, 0.42), (0.0, -0.95)], 0.05)
            + polygon([(0.06, -0.9), (0.06, 0.3), (0.8, 0.3)], LIGHT)
            + polygon([(-0.06, -0.75), (-0.06, 0.3), (-0.65, 0.3)], ACCENT)
            + polygon([(0.0, -0.97), (0.28, -0.9), (0.0, -0.82)], ACCENT))


def _cup() -> list[Part]:
    return (ellipse(-0.1, 0.68, 0.85, 0.14, LIGHT)
            + ellipse(0.5, 0.0, 0.33, 0.3) + ellipse(0.5, 0.0, 0.19, 0.16, CUT)
            + polygon([(-0.65, -0.6), (0.45, -0.6), (0.33, 0.6), (-0.53, 0.6)])
            + rect(-0.7, -0.2, 0.5, -0.05, ACCENT, clip=True)
            + ellipse(-0.1, -0.6, 0.55, 0.12, LIGHT) + ellipse(-0.1, -0.59, 0.46, 0.08, DARK))


def _bottle() -> list[Part]:
    return (polygon([(-0.35, 0.95), (-0.35, -0.1), (-0.13, -0.45), (-0.13, -0.78), (0.13, -0.78), (0.13, -0.45),
                     (0.35, -0.1), (0.35, 0.95)])
            + stroke([(-0.22, -0.05), (-0.22, 0.85)], 0.05, LIGHT, clip=True)
            + rect(-0.4, 0.1, 0.4, 0.6, LIGHT, clip=True)
            + stroke([(-0.2, 0.25), (0.2, 0.25)], 0.06, DARK, clip=True)
            + stroke([(-0.2, 0.43), (0.08, 0.43)], 0.06, DARK, clip=True)
            + rect(-0.16, -0.97, 0.16, -0.75, ACCENT))


def _wine_glass() -> list[Part]:
    return (polygon([(0.45, -0.95)] + arc(0.0, -0.55, 0.45, 0.5, 0, 180) + [(-0.45, -0.95)])
            + rect(-0.5, -0.5, 0.5, -0.12, ACCENT, clip=True)
            + stroke([(-0.3, -0.85), (-0.33, -0.6)], 0.05, LIGHT, clip=True)
            + stroke([(0.0, -0.1), (0.0, 0.8)], 0.08, BODY) + ellipse(0.0, 0.85, 0.42, 0.1)
            + ellipse(0.0, -0.95, 0.45, 0.06, LIGHT))


def _fork() -> list[Part]:
    tines = [p for x in (-0.255, -0.085, 0.085, 0.255) for p in stroke([(x, -0.28), (x, -0.95)], 0.075, BODY)]
    return (stroke([(0.0, 0.95), (0.0, 0.15)], 0.16, BODY)
            + polygon([(-0.08, 0.2), (-0.3, -0.15), (-0.3, -0.3), (0.3, -0.3), (0.3, -0.15), (0.08, 0.2)])
            + tines + ellipse(0.0, 0.72, 0.035, 0.12, CUT))


def _knife() -> list[Part]:
    return (polygon([(-0.12, 0.05), (-0.12, -0.7), (0.0, -0.95), (0.15, -0.85), (0.15, 0.05)], LIGHT)
            + stroke([(0.13, 0.0), (0.13, -0.82)], 0.03, DARK, clip=True)
            + rect(-0.14, 0.1, 0.17, 0.9) + ellipse(0.015, 0.9, 0.155, 0.08)
            + rect(-0.16, 0.02, 0.19, 0.12, DARK)
            + ellipse(0.015, 0.35, 0.045, 0.045, LIGHT, clip=True)
            + ellipse(0.015, 0.65, 0.045, 0.045, LIGHT, clip=True))


def _spoon() -> list[Part]:
    return (polygon([(-0.05, -0.2), (0.05, -0.2), (0.1, 0.9), (-0.1, 0.9)]) + ellipse(0.0, 0.9, 0.1, 0.08)
            + ellipse(0.0, -0.55, 0.3, 0.4) + ellipse(0.06, -0.5, 0.18, 0.28, LIGHT, clip=True))


def _ball() -> list[Part]:
    centre = _regular(0.0, 0.0, 0.28, 5)
    patches = polygon(centre, DARK, clip=True)
    for x, y in _regular(0.0, 0.0, 0.85, 5, angle=-54.0):
        patches += polygon(_regular(x, y, 0.28, 5, angle=np.degrees(np.arctan2(y, x))), DARK, clip=True)
    seams = [p for (x, y) in centre for p in stroke([(x, y), (2.2 * x, 2.2 * y)], 0.04, DARK, clip=True)]
    return ellipse(0.0, 0.0, 0.9, 0.9) + patches + seams


def _tennis_racket() -> list[Part]:
    cx, cy, rx, ry = 0.0, -0.35, 0.42, 0.52
    strings = []
    for t in np.linspace(-0.8, 0.8, 6):
        half = np.sqrt(1 - t * t)
        strings += stroke([(cx + t * rx, cy - half * ry), (cx + t * rx, cy + half * ry)], 0.025, LIGHT)
        strings += stroke([(cx - half * rx, cy + t * ry), (cx + half * rx, cy + t * ry)], 0.025, LIGHT)
    return (ellipse(cx, cy, 0.5, 0.6) + ellipse(cx, cy, rx, ry, CUT) + strings
            + stroke([(-0.3, 0.12), (0.0, 0.4), (0.3, 0.12)], 0.06, BODY)
            + stroke([(0.0, 0.35), (0.0, 0.95)], 0.13, DARK))


def _kite() -> list[Part]:
    tail = [(0.0, 0.45), (0.12, 0.6), (-0.05, 0.72), (0.15, 0.85), (0.05, 0.98)]
    bows = [p for x, y in tail[1:] for p in polygon([(x - 0.08, y - 0.05), (x + 0.08, y + 0.05), (x + 0.08, y - 0.05),
                                                        (x - 0.08, y + 0.05)], ACCENT)]
    return (stroke(tail, 0.035) + bows
            + polygon([(0.0, -0.95), (0.55, -0.35), (0.0, 0.45), (-0.55, -0.35)])
            + polygon([(0.0, -0.95), (0.55, -0.35), (0.0, -0.35)], ACCENT, clip=True)
            + polygon([(0.0, 0.45), (-0.55, -0.35), (0.0, -0.35)], ACCENT, clip=True)
            + stroke([(0.0, -0.95), (0.0, 0.45)], 0.04, DARK, clip=True)
            + stroke([(-0.55, -0.35), (0.55, -0.35)], 0.04, DARK, clip=True))


def _skateboard() -> list[Part]:
    return (mirrored(polygon([(-0.6, 0.05), (-0.42, 0.05), (-0.47, 0.2), (-0.55, 0.2)], LIGHT)
                     + ellipse(-0.52, 0.27, 0.13, 0.13, ACCENT) + ellipse(-0.52, 0.27, 0.04, 0.04, DARK))
            + polygon([(-1.0, -0.3), (-0.82, -0.1), (0.82, -0.1), (1.0, -0.3), (0.97, -0.15), (0.84, 0.06),
                       (-0.84, 0.06), (-0.97, -0.15)])
            + stroke([(-0.8, -0.08), (0.8, -0.08)], 0.04, DARK, clip=True)
            + mirrored(polygon([(-0.3, -0.05), (-0.1, -0.05), (-0.2, 0.1)], ACCENT, clip=True)))


def _surfboard() -> list[Part]:
    nose = [(-0.28, -0.2), (-0.15, -0.7), (0.0, -0.97), (0.15, -0.7), (0.28, -0.2)]
    return (polygon(arc(0.0, 0.1, 0.3, 0.85, 0, 180) + nose)
            + rect(-0.4, -0.35, 0.4, -0.22, ACCENT, clip=True) + rect(-0.4, -0.15, 0.4, -0.1, ACCENT, clip=True)
            + stroke([(0.0, -0.95), (0.0, 0.93)], 0.03, DARK, clip=True)
            + stroke([(0.0, 0.9), (0.15, 0.97), (0.3, 0.9)], 0.03, DARK))


def _frisbee() -> list[Part]:
    return (ellipse(0.0, 0.0, 0.95, 0.5) + ellipse(0.0, 0.03, 0.8, 0.4, LIGHT, clip=True)
            + ellipse(0.0, 0.04, 0.68, 0.32, BODY, clip=True) + ellipse(0.0, 0.05, 0.42, 0.2, ACCENT, clip=True)
            + polygon(_regular(0.0, 0.05, 0.16, 5), DARK, clip=True))


ICONS: dict[str, Icon] = {name: tuple(draw()) for name, draw in {
    "fish": _fish, "bird": _bird, "butterfly": _butterfly, "snail": _snail, "turtle": _turtle, "spider": _spider,
    "car": _car, "bus": _bus, "truck": _truck, "bicycle": _bicycle, "airplane": _airplane, "sailboat": _sailboat,
    "cup": _cup, "bottle": _bottle, "wine_glass": _wine_glass, "fork": _fork, "knife": _knife, "spoon": _spoon,
    "ball": _ball, "tennis_racket": _tennis_racket, "kite": _kite, "skateboard": _skateboard,
    "surfboard": _surfboard, "frisbee": _frisbee,
}.items()}
