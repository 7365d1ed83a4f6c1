"""0.1° tile names, UTM zones and tile footprints, exactly by the incumbent's placement rule."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyproj import Transformer

TILE_DEG = 0.1
PIXEL_M = 10.0
SOUTH_FALSE_NORTHING = 10_000_000.0
_NAME_RE = re.compile(r"^grid_(-?\d+\.\d{2})_(-?\d+\.\d{2})$")


@dataclass(frozen=True, order=True)
class TileId:
    """A 0.1° tile, identified by its centre in hundredths of a degree (lon_i, lat_i)."""

    lon_i: int
    lat_i: int

    @property
    def lon(self) -> float:
        return self.lon_i / 100.0

    @property
    def lat(self) -> float:
        return self.lat_i / 100.0

    @property
    def name(self) -> str:
        return tile_name(self.lon, self.lat)


def tile_name(lon: float, lat: float) -> str:
    """The legacy name `grid_{lon:.2f}_{lat:.2f}` of the tile centred at (lon, lat)."""
    return f"grid_{lon:.2f}_{lat:.2f}"


def parse_tile_name(name: str) -> TileId:
    """Parse `grid_X_Y` into a TileId; ValueError if it is not a valid tile centre."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError(f"not a tile name of the form grid_<lon>_<lat>: {name!r}")
    lon_i, lat_i = round(float(m.group(1)) * 100), round(float(m.group(2)) * 100)
    if lon_i % 10 != 5 and lon_i % 10 != -5 or lat_i % 10 not in (5, -5):
        raise ValueError(f"tile centre must be an odd multiple of 0.05°: {name!r}")
    if not (-18000 < lon_i < 18000 and -9000 < lat_i < 9000):
        raise ValueError(f"tile centre outside the globe: {name!r}")
    return TileId(lon_i, lat_i)


def tile_of_point(lon: float, lat: float) -> TileId:
    """The tile that contains a point: centre = floor(x*10)/10 + 0.05."""
    return TileId(round((math.floor(lon * 10) / 10 + 0.05) * 100), round((math.floor(lat * 10) / 10 + 0.05) * 100))


def utm_zone(lon: float) -> int:
    """UTM zone of a longitude, clamped to 1..60 (no Norway/Svalbard exceptions)."""
    return min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)


def tile_epsg(lon: float, lat: float) -> int:
    """EPSG code of the tile's own CRS: 326zz north of the equator, 327zz south."""
    return (32600 if lat >= 0 else 32700) + utm_zone(lon)


def canonical_epsg(zone: int) -> int:
    """The store's one CRS per zone: the northern UTM EPSG code for both hemispheres."""
    return 32600 + zone


_local = threading.local()


def _to_utm(epsg: int) -> Transformer:
    # pyproj transformers must not be shared between threads: keep one set per thread
    from pyproj import Transformer  # imported on first use: readers of a store never project

    cache = _local.__dict__.setdefault("transformers", {})
    if epsg not in cache:
        cache[epsg] = Transformer.from_crs(4326, epsg, always_xy=True)
    return cache[epsg]


@dataclass(frozen=True)
class Footprint:
    """A tile's pixel grid in its own CRS: top-left corner and shape (10 m pixels)."""

    epsg: int
    zone: int
    origin_x: float
    origin_y: float
    height: int
    width: int

    @property
    def south(self) -> bool:
        return self.epsg >= 32700

    @property
    def canonical_origin_y(self) -> float:
        """Top edge in the zone's canonical CRS (southern northings made continuous and negative)."""
        return self.origin_y - SOUTH_FALSE_NORTHING if self.south else self.origin_y

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine transform (rasterio order) of the tile's grid in its own CRS."""
        return (PIXEL_M, 0.0, self.origin_x, 0.0, -PIXEL_M, self.origin_y)


@lru_cache(maxsize=65536)
def footprint(tile: TileId) -> Footprint:
    """Project the four corners of the tile's 0.1° cell into its UTM CRS; no file is opened."""
    lon, lat = tile.lon, tile.lat
    epsg = tile_epsg(lon, lat)
    t = _to_utm(epsg)
    half = TILE_DEG / 2
    west, east, south, north = lon - half, lon + half, lat - half, lat + half
    xs, ys = t.transform([west, west, east, east], [south, north, south, north])
    origin_x = min(xs[0], xs[1])
    origin_y = max(ys[1], ys[3])
    height = round((origin_y - min(ys[0], ys[2])) / PIXEL_M)
    width = round((max(xs[2], xs[3]) - origin_x) / PIXEL_M)
    return Footprint(epsg, utm_zone(lon), origin_x, origin_y, height, width)


@dataclass(frozen=True)
class ZoneGrid:
    """A zone's pixel grid in its canonical CRS: top-left corner and shape, padded to whole shards."""

    zone: int
    origin_x: float
    origin_y: float
    height: int
    width: int

    @property
    def epsg(self) -> int:
        return canonical_epsg(self.zone)

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        return (PIXEL_M, 0.0, self.origin_x, 0.0, -PIXEL_M, self.origin_y)

    def x_centre(self, col):
        """Easting of the centre of pixel column `col` (a number or an array)."""
        return self.origin_x + (col + 0.5) * PIXEL_M

    def y_centre(self, row):
        """Northing of the centre of pixel row `row` (a number or an array); rows run south."""
        return self.origin_y - (row + 0.5) * PIXEL_M

    def offset(self, fp: Footprint) -> tuple[int, int]:
        """(row, col) of a tile's top-left pixel in this grid: floor, not round (docs/format.md, "Placing tiles")."""
        col = math.floor((fp.origin_x - self.origin_x) / PIXEL_M)
        row = math.floor((self.origin_y - fp.canonical_origin_y) / PIXEL_M)
        return row, col


def zone_grid(zone: int, tiles: list[TileId], shard: tuple[int, int]) -> ZoneGrid:
    """Union of the tiles' projected cells in the canonical CRS, outward to 10 m, padded to whole shards."""
    if not tiles:
        raise ValueError(f"zone {zone} has no tiles")
    fps = [footprint(t) for t in tiles]
    bad = [t.name for t, fp in zip(tiles, fps) if fp.zone != zone]
    if bad:
        raise ValueError(f"tiles not in zone {zone}: {', '.join(bad[:5])}")
    min_x = min(fp.origin_x for fp in fps)
    max_x = max(fp.origin_x + fp.width * PIXEL_M for fp in fps)
    max_y = max(fp.canonical_origin_y for fp in fps)
    min_y = min(fp.canonical_origin_y - fp.height * PIXEL_M for fp in fps)
    origin_x = math.floor(min_x / PIXEL_M) * PIXEL_M
    origin_y = math.ceil(max_y / PIXEL_M) * PIXEL_M
    right = math.ceil(max_x / PIXEL_M) * PIXEL_M
    bottom = math.floor(min_y / PIXEL_M) * PIXEL_M
    width = round((right - origin_x) / PIXEL_M)
    height = round((origin_y - bottom) / PIXEL_M)
    sh, sw = shard
    return ZoneGrid(zone, float(origin_x), float(origin_y), -(-height // sh) * sh, -(-width // sw) * sw)
