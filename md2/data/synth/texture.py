"""Surface colours of the synthetic scenes: a function of world position, the same in every frame and camera.

Each surface kind (ground, building, car, pole, backdrop) is coloured by a base colour plus a sum of COMPONENTS
coloured sinusoids of the world position, with random 3D directions, wavelengths spread log-uniformly over the
kind's range (several octaves, so photometric matching has texture at every scale) and random phases; the sum of
incommensurate waves does not visibly repeat. Lighting is a fixed sun with Lambert's law (depends on the surface
normal only, never on the viewer), so a point's colour does not depend on the camera that sees it.

A camera pixel averages the texture over its footprint on the surface: :func:`shade` takes the footprint (the
world-space size of one pixel step along u and v) and attenuates each wave analytically by
exp(-0.5 * PIXEL_BLUR * phase_step^2), the Gaussian pre-filter of a pixel's box integration (plus a little lens
blur). Without it, waves shorter than two pixels would alias into patterns that change from frame to frame (the
far ground, near the horizon, is seen at grazing angles). A surface seen from similar distances -- consecutive
frames, the two stereo cameras -- therefore looks the same; the lidar's reflectance uses the unfiltered texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUND, BUILDING, CAR, POLE, BACKDROP = range(5)
"""Surface kinds: texture rows of :class:`Texture`."""
KINDS = 5
COMPONENTS = 24
"""Sinusoids per surface kind."""
WAVELENGTHS = np.array([[0.12, 6.0], [0.15, 8.0], [0.10, 3.0], [0.05, 1.5], [4.0, 80.0]])
"""Shortest and longest wavelength per kind, metres."""
CONTRAST = np.array([0.13, 0.13, 0.12, 0.10, 0.06])
"""Standard deviation of the texture per colour channel, per kind (before lighting)."""
BASE = np.array([[0.42, 0.40, 0.38], [0.62, 0.52, 0.44], [0.36, 0.40, 0.56], [0.52, 0.50, 0.46],
                 [0.55, 0.66, 0.84]])
"""Mean colour per kind (RGB in [0, 1]): asphalt, facades, cars, poles, sky."""
SUN = np.array([0.45, -0.80, 0.40]) / np.linalg.norm([0.45, -0.80, 0.40])
"""Direction towards the sun in world coordinates (y is down, so -y is up)."""
AMBIENT, DIFFUSE = 0.62, 0.45
CHUNK = 1024
"""Points shaded at once: the (COMPONENTS, CHUNK) temporaries stay in cache, and the small matrix products stay
below OpenBLAS's threshold for multi-threading (whose thread start-up would cost more than it saves)."""
PIXEL_BLUR = 1 / 12 + 0.3 ** 2
"""Variance, in pixels^2, of a pixel's averaging: a one-pixel box (1/12) and a 0.3-pixel Gaussian lens blur."""


@dataclass(frozen=True)
class Texture:
    """colour(kind, X) = base[kind] + sum_k amplitude[kind, k] * sin(frequency[kind, k] . X + phase[kind, k])."""

    base: np.ndarray       # (KINDS, 3)
    frequency: np.ndarray  # (KINDS, COMPONENTS, 3) radians per metre
    phase: np.ndarray      # (KINDS, COMPONENTS) radians
    amplitude: np.ndarray  # (KINDS, COMPONENTS, 3)


def make_texture(rng: np.random.Generator) -> Texture:
    """Random textures for every kind: multi-octave, coloured, amplitude ~ wavelength^0.35 (fine detail stays)."""
    low, high = np.log(WAVELENGTHS[:, :1]), np.log(WAVELENGTHS[:, 1:])
    wavelength = np.exp(rng.uniform(low, high, (KINDS, COMPONENTS)))
    direction = rng.normal(size=(KINDS, COMPONENTS, 3))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    frequency = direction * (2 * np.pi / wavelength)[..., None]
    strength = (wavelength / WAVELENGTHS[:, 1:]) ** 0.35
    colour = rng.uniform(0.5, 1.0, (KINDS, COMPONENTS, 1)) + rng.normal(0, 0.25, (KINDS, COMPONENTS, 3))
    amplitude = strength[..., None] * colour
    # Scale so that each channel's standard deviation (sum of amplitude^2 / 2) is CONTRAST on average.
    spread = np.sqrt((amplitude ** 2).sum(1).mean(1) / 2)
    amplitude *= (CONTRAST / spread)[:, None, None]
    base = BASE + rng.uniform(-0.06, 0.06, (KINDS, 3))
    return Texture(base=base, frequency=frequency, phase=rng.uniform(0, 2 * np.pi, (KINDS, COMPONENTS)),
                   amplitude=amplitude)


def shade(texture: Texture, kind: np.ndarray, points: np.ndarray, normals: np.ndarray | None = None,
          tint: np.ndarray | None = None, footprint: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Colours (3, N) float32 in [0, 1] (RGB rows) of world points.

    Args:
        kind: (N,) surface kind per point.
        points: (3, N) world positions, metres.
        normals: (3, N) unit surface normals for the sun's light (None: unlit); the backdrop is never lit.
        tint: (N, 3) colour offsets (per object), or None.
        footprint: (J_u, J_v), each (3, N): world displacement, metres, of the surface point per pixel step
            along u and v (None: no pixel pre-filter, as for the lidar's reflectance).
    """
    order = np.argsort(kind, kind="stable")
    bounds = np.searchsorted(kind[order], np.arange(KINDS + 1))
    sorted_points = points[:, order].astype(np.float32)
    spread = None if footprint is None else _spread(footprint[0][:, order], footprint[1][:, order])
    waves = np.empty((3, len(kind)), dtype=np.float32)
    for k in range(KINDS):
        # Contiguous float32 operands: numpy's matmul is slow on transposed ones.
        frequency = np.ascontiguousarray(texture.frequency[k], dtype=np.float32)  # (K, 3)
        phase = texture.phase[k].astype(np.float32)[:, None]
        amplitude = np.ascontiguousarray(texture.amplitude[k].T, dtype=np.float32)  # (3, K)
        damping = _damping(texture.frequency[k])  # (K, 6)
        for start in range(bounds[k], bounds[k + 1], CHUNK):
            rows = slice(start, min(start + CHUNK, bounds[k + 1]))
            wave = frequency @ sorted_points[:, rows]  # (K, n) phases
            wave += phase
            np.sin(wave, out=wave)
            if spread is not None:
                attenuation = damping @ spread[:, rows]
                np.maximum(attenuation, -20.0, out=attenuation)  # no denormals (slow arithmetic) from exp
                wave *= np.exp(attenuation, out=attenuation)
            waves[:, rows] = amplitude @ wave
    colour = texture.base[kind].T.astype(np.float32)
    if tint is not None:
        colour += tint.T
    colour[:, order] += waves
    if normals is not None:
        light = AMBIENT + DIFFUSE * np.clip(SUN[0] * normals[0] + SUN[1] * normals[1] + SUN[2] * normals[2], 0, None)
        light[kind == BACKDROP] = 1.0
        colour *= light.astype(np.float32)
    return np.clip(colour, 0.0, 1.0, out=colour)


def _spread(step_u: np.ndarray, step_v: np.ndarray) -> np.ndarray:
    """(6, n) float32 entries of M = J_u J_u^T + J_v J_v^T (xx, yy, zz, 2xy, 2xz, 2yz) from steps (3, n), so that
    a wave of frequency w changes phase by a total squared amount of w^T M w over one pixel step along u and v."""
    u, v = step_u.astype(np.float32), step_v.astype(np.float32)
    spread = np.empty((6, u.shape[1]), dtype=np.float32)
    for row, (i, j) in enumerate(((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))):
        np.multiply(u[i], u[j], out=spread[row])
        spread[row] += v[i] * v[j]
        if i != j:
            spread[row] *= 2
    return spread


def _damping(frequency: np.ndarray) -> np.ndarray:
    """(K, 6) float32: damping @ spread = -0.5 * PIXEL_BLUR * w^T M w per wave (the Gaussian pre-filter)."""
    x, y, z = frequency[:, 0], frequency[:, 1], frequency[:, 2]
    terms = np.stack([x * x, y * y, z * z, x * y, x * z, y * z], 1)
    return np.ascontiguousarray(-0.5 * PIXEL_BLUR * terms, dtype=np.float32)
