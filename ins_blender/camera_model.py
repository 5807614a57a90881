"""A Blender camera as the INS pipeline sees it: pixel intrinsics exactly as Blender projects (sensor
fit, sensor size, lens, shift and pixel aspect; an orthographic camera's pixels per unit) and its
camera-to-world matrix without scale. The capture writes them into the dataset; the INS render
engine sends them to its render server, so both agree with Blender's own renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mathutils import Matrix, Vector


@dataclass(frozen=True)
class CameraIntrinsics:
    """A pinhole camera in pixels: principal point from the top-left corner, rows going down."""

    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int

    @property
    def camera_angle_x(self) -> float:
        return 2.0 * math.atan(0.5 * self.w / self.fl_x)

    @property
    def camera_angle_y(self) -> float:
        return 2.0 * math.atan(0.5 * self.h / self.fl_y)

    def as_dict(self) -> dict:
        return {
            "camera_angle_x": self.camera_angle_x,
            "camera_angle_y": self.camera_angle_y,
            "fl_x": self.fl_x,
            "fl_y": self.fl_y,
            "cx": self.cx,
            "cy": self.cy,
            "w": self.w,
            "h": self.h,
        }

    def close_to(self, other: "CameraIntrinsics", tol: float = 1e-6) -> bool:
        a = (self.fl_x, self.fl_y, self.cx, self.cy)
        b = (other.fl_x, other.fl_y, other.cx, other.cy)
        return (self.w, self.h) == (other.w, other.h) and all(abs(x - y) <= tol * max(1.0, abs(x)) for x, y in zip(a, b))


def camera_intrinsics(camera_data, width: int, height: int, pixel_aspect_x: float = 1.0,
                      pixel_aspect_y: float = 1.0) -> CameraIntrinsics:
    """Pixel intrinsics of a perspective camera rendered at width x height, as Blender projects;
    for an orthographic camera, pixels per world unit (and the same principal point).

    Follows BKE_camera_params_compute_viewplane: the sensor size is sensor_height for a VERTICAL
    fit and sensor_width otherwise (AUTO fits sensor_width to the larger side); the fitted side
    spans `viewfac` pixels (and an orthographic camera's Orthographic Scale in world units); shift
    is in units of that side; non-square pixels (ycor = aspect y / aspect x) scale the vertical
    focal length and shift.
    """
    aspx, aspy = float(pixel_aspect_x), float(pixel_aspect_y)
    fit = camera_data.sensor_fit
    sensor = camera_data.sensor_height if fit == "VERTICAL" else camera_data.sensor_width
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspx * width >= aspy * height else "VERTICAL"
    ycor = aspy / aspx
    viewfac = width if fit == "HORIZONTAL" else ycor * height
    fl_x = viewfac / camera_data.ortho_scale if camera_data.type == "ORTHO" else camera_data.lens * viewfac / sensor
    fl_y = fl_x / ycor
    cx = 0.5 * width - camera_data.shift_x * viewfac
    cy = 0.5 * height + camera_data.shift_y * viewfac / ycor
    return CameraIntrinsics(fl_x, fl_y, cx, cy, int(width), int(height))


def camera_to_world(matrix_world: Matrix) -> list[list[float]]:
    """matrix_world with the scale taken out of its axes, as nested lists (what Blender renders)."""
    m = Matrix(matrix_world)
    for col in range(3):
        axis = Vector((m[0][col], m[1][col], m[2][col]))
        length = axis.length
        if length > 1e-12:
            for row in range(3):
                m[row][col] /= length
    return [[float(m[row][col]) for col in range(4)] for row in range(4)]
