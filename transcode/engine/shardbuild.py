"""Build one shard set (embeddings, scales and the nested depths' arrays) from its tiles: read windows band by band,
apply the scale sentinels, fold the valid pixels into the shard's stretch statistics while they are in hand, and
stream the inner chunks of every array through the shard writers into the store."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from transcode.codecs.spec import CodecSpec
from transcode.engine.plan import Placement, ShardTask
from transcode.engine.shardwriter import ShardWriter
from transcode.engine.stretchstats import ShardStats
from transcode.engine.transpose import band_to_chunks, chunk_layout
from transcode.errors import ArchiveError
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES, ArrayDecl, Zone, sharded_arrays
from transcode.format.grid import ZoneGrid
from transcode.format.manifest import ObjectRecord
from transcode.format.sentinels import sanitize_scales
from transcode.legacy.npyheader import NpyHeader
from transcode.legacy.tiles import NpyTileFile, Window, read_landmask
from transcode.storage import DEFAULT_PART_SIZE, ObjectWriter, Storage

__all__ = ["EncodeSettings", "ShardResult", "build_shard", "sanitize_scales", "tile_files"]


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides a shard set's bytes, plus how it is uploaded."""

    shard: tuple[int, int]
    chunk: tuple[int, int]
    codecs: dict[str, CodecSpec]
    part_size: int = DEFAULT_PART_SIZE
    band_rows: int = 64
    depths: tuple[int, ...] = ()  # nested depths: an `embeddings_d{D}` shard beside each embeddings shard

    def arrays(self) -> list[ArrayDecl]:
        """The sharded arrays a shard set has a shard of (`embeddings` first)."""
        return sharded_arrays(self.depths)

    def fingerprint(self) -> dict:
        """The byte-deciding settings (not part size or band height), JSON-ready."""
        chains = {d.codec: self.codecs[d.codec].zarr_config(d.dtype) for d in sharded_arrays()}
        out = {"shard": list(self.shard), "chunk": list(self.chunk), **chains}
        if self.depths:
            out["depths"] = list(self.depths)
        return out


@dataclass(frozen=True)
class StretchTarget:
    """Collect a shard's stretch statistics with this sample size and put them under `key` (beside its journal
    entry, before it is written)."""

    sample_size: int
    key: str


@dataclass
class ShardResult:
    """What building one shard set produced."""

    task: str
    objects: list[ObjectRecord]
    input_bytes: int
    chunks: int
    seconds: float
    fingerprint: str = ""
    placements: int = 0
    extra: dict = field(default_factory=dict)
    valid_pixels: int | None = None  # folded into the stretch statistics (None: not collected)

    def to_dict(self) -> dict:
        return asdict(self)


def tile_files(source: Storage, p: Placement) -> tuple[NpyTileFile, NpyTileFile]:
    """The placement's embeddings and scales files, with the headers the inventory read (no read here)."""
    emb_h = NpyHeader((1, 0), EMBEDDINGS.dtype, False, (p.height, p.width, BANDS), p.embeddings_offset)
    sc_h = NpyHeader((1, 0), SCALES.dtype, False, (p.height, p.width), p.scales_offset)
    return (NpyTileFile(source, p.embeddings_key, emb_h, "embeddings"),
            NpyTileFile(source, p.scales_key, sc_h, "scales"))


class _Output:
    """One array's shard being written: its inner chunk sides, band count and writer."""

    def __init__(self, decl: ArrayDecl, zone: Zone, key: str, sink: ObjectWriter, codec: CodecSpec) -> None:
        self.decl, self.key, self.sink = decl, key, sink
        self.ch, self.cw = decl.spatial(decl.chunks(zone))
        self.bands = zone.size(decl.dims[1]) if len(decl.dims) == 4 else 1  # embedding bands; 1 for scales
        self.n_cols = zone.shard[1] // self.cw
        n_chunks = (zone.shard[0] // self.ch) * self.n_cols
        per_pixel = decl.dtype.itemsize * self.bands
        self.writer = ShardWriter(sink, n_chunks, codec.encoder(decl.dtype),
                                  codec.batch_encoder(decl.dtype, per_pixel * self.ch * self.cw))

    def emit(self, chunks: np.ndarray, empty: np.ndarray, r0: int, x0: int) -> None:
        """Hand the band's non-empty inner chunks (C order) to the writer: `chunks` one inner chunk per entry of
        its first two axes, `empty` per pixel (a chunk whose pixels are all empty stays absent, reading as the fill
        value), the band starting at shard row `r0` and shard column `x0`."""
        nr, nc = chunks.shape[:2]
        blank = empty.reshape(nr, self.ch, nc, self.cw).all(axis=(1, 3)).ravel()
        which = np.flatnonzero(~blank)
        i, j = np.divmod(which, nc)
        ks = (r0 // self.ch + i) * self.n_cols + x0 // self.cw + j
        self.writer.add_run(ks, chunks.reshape(nr * nc, *chunks.shape[2:]), which)


def _open(store: Storage, outputs: list[tuple[ArrayDecl, str]], zone: Zone, settings: EncodeSettings) -> list[_Output]:
    """A writer per array; a failure aborts the ones already open (their temporary files and threads go)."""
    opened: list[_Output] = []
    try:
        for decl, key in outputs:
            sink = store.open_writer(key, settings.part_size)
            try:
                opened.append(_Output(decl, zone, key, sink, settings.codecs[decl.codec]))
            except BaseException:
                sink.abort()
                raise
    except BaseException:
        for o in opened:
            o.sink.abort()
        raise
    return opened


def build_shard(task: ShardTask, settings: EncodeSettings, source: Storage, store: Storage,
                stretch: StretchTarget | None = None) -> ShardResult:
    """Write the task's shard of every sharded array, each whole and committed only when all are complete
    (shallow depths first, then scales, `embeddings` last); with `stretch`, its stretch statistics after them."""
    t0 = time.perf_counter()
    sh, sw = settings.shard
    ch, cw = settings.chunk
    # the zone as the arrays see it (only the shard and chunk sides and the band counts matter here)
    zone = Zone(ZoneGrid(task.zone, 0.0, 0.0, sh, sw), (task.year,), settings.shard, settings.chunk)
    decls = settings.arrays()
    outs = _open(store, [(d, task.key(d.name)) for d in decls], zone, settings)
    emb_out, sc_out, depth_outs = outs[0], outs[1], outs[2:]
    # a band holds whole inner chunks of every array (the depths' are power-of-two multiples of the chunk)
    tall = max(o.ch for o in outs)
    wide = max(o.cw for o in outs)
    band = max(tall, settings.band_rows - settings.band_rows % tall)
    r_base, c_base = task.shard_row * sh, task.shard_col * sw
    files = {p: tile_files(source, p) for p in task.placements}
    masks: dict[Placement, np.ndarray | None] = {}
    stats = ShardStats(task.zone, task.year, stretch.sample_size) if stretch else None
    input_bytes = 0
    try:
        for p in task.placements:
            if p.landmask_key is None:
                masks[p] = None
                continue
            try:
                masks[p] = read_landmask(source, p.landmask_key)
            except ArchiveError:
                masks[p] = None  # an unreadable landmask is reported by inventory; the tile counts as all land
        emb_dt, sc_dt = EMBEDDINGS.dtype, SCALES.dtype
        # one set of band buffers for the whole shard: the pages are faulted in once, not once per band
        emb_band = np.empty(band * sw * BANDS, dtype=emb_dt)
        emb_chunks = np.empty_like(emb_band)
        sc_band = np.empty(band * sw, dtype=sc_dt)
        depth_bufs = [(np.empty(band * sw * o.bands, emb_dt), np.empty(band * sw * o.bands, emb_dt))
                      for o in depth_outs]
        for r0 in range(0, sh, band):
            r1 = min(sh, r0 + band)
            hits = [(p, p.rows_in(r_base + r0, r_base + r1), p.cols_in(c_base, c_base + sw))
                    for p in task.placements]  # canonical order: later tiles overwrite earlier ones
            hits = [(p, rr, cc) for p, rr, cc in hits if rr is not None and cc is not None]
            if not hits:
                continue  # nothing here: every chunk of the band stays empty
            # only the columns of the inner chunks (of every array) the band's tiles touch are assembled
            j0 = (min(cc[0] for _, _, cc in hits) - c_base) // wide
            j1 = -(-(max(cc[1] for _, _, cc in hits) - c_base) // wide)
            x0 = c_base + j0 * wide
            rows, cols = r1 - r0, (j1 - j0) * wide
            emb = emb_band[:rows * cols * BANDS].reshape(rows, cols, BANDS)
            sc = sc_band[:rows * cols].reshape(rows, cols)
            sc.fill(SCALES.fill)
            targets = [(slice(rr[0] - r_base - r0, rr[1] - r_base - r0), slice(cc[0] - x0, cc[1] - x0))
                       for _, rr, cc in hits]
            covered = np.zeros((rows, cols), dtype=bool)
            for dst in targets:
                covered[dst] = True
            if not covered.all():  # clear only what no tile overwrites (a full clear costs a memset per band)
                emb[~covered] = EMBEDDINGS.fill
            for (p, rr, cc), dst in zip(hits, targets):
                win = Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col)
                e_file, s_file = files[p]
                e_file.read_into(win, emb[dst])
                s = s_file.read(win)
                mask = masks[p]
                sanitize_scales(s, None if mask is None else mask[win.row0:win.row1, win.col0:win.col1])
                sc[dst] = s
                input_bytes += emb[dst].nbytes + s.nbytes
            if stats is not None:  # strip by strip of inner chunk rows: the blocking depends on nothing else
                for i in range(0, rows, ch):
                    stats.add(emb[i:i + ch], sc[i:i + ch], r_base + r0 + i, x0)
            empty = np.isposinf(sc)
            for o, (flat, out) in zip(depth_outs, depth_bufs):
                part = flat[:rows * cols * o.bands].reshape(rows, cols, o.bands)
                np.copyto(part, emb[:, :, :o.bands])
                layout = chunk_layout(rows, cols, o.bands, o.ch, o.cw)
                o.emit(band_to_chunks(part, o.ch, o.cw, out[:part.size].reshape(layout)), empty, r0, x0 - c_base)
            chunks = band_to_chunks(emb, ch, cw, emb_chunks[:emb.size].reshape(chunk_layout(rows, cols, BANDS, ch, cw)))
            emb_out.emit(chunks, empty, r0, x0 - c_base)
            sc_chunks = np.ascontiguousarray(sc.reshape(rows // ch, ch, cols // cw, cw).transpose(0, 2, 1, 3))
            sc_out.emit(sc_chunks, empty, r0, x0 - c_base)
        for o in outs:
            o.writer.finish()
        # an embeddings shard's presence implies every other one of its set: it is committed last
        for o in [*depth_outs, sc_out, emb_out]:
            o.sink.commit()
    except BaseException:
        for o in outs:
            o.sink.abort()
        raise
    objects = [ObjectRecord.from_writer(o.key, o.sink, settings.part_size) for o in outs]
    if stats is not None:
        store.put(stretch.key, stats.partial().to_bytes())
    return ShardResult(task.name, objects, input_bytes, emb_out.writer.chunks_written, time.perf_counter() - t0,
                       placements=len(task.placements), valid_pixels=stats.n if stats is not None else None)
