"""Build one shard pair (embeddings + scales) from its tiles: read windows band by band, apply the scale
sentinels, and stream the inner chunks through the shard writers into the store."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from transcode.codecs.spec import CodecSpec
from transcode.engine.plan import Placement, ShardTask
from transcode.engine.shardwriter import ShardWriter
from transcode.engine.transpose import band_to_chunks, chunk_layout
from transcode.errors import ArchiveError
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES, sharded_arrays
from transcode.format.manifest import ObjectRecord
from transcode.format.sentinels import sanitize_scales
from transcode.legacy.npyheader import NpyHeader
from transcode.legacy.tiles import NpyTileFile, Window, read_landmask
from transcode.storage import DEFAULT_PART_SIZE, Storage

__all__ = ["EncodeSettings", "ShardResult", "build_shard", "sanitize_scales", "tile_files"]


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides a shard's bytes, plus how it is uploaded."""

    shard: tuple[int, int]
    chunk: tuple[int, int]
    codecs: dict[str, CodecSpec]
    part_size: int = DEFAULT_PART_SIZE
    band_rows: int = 64

    def fingerprint(self) -> dict:
        """The byte-deciding settings (not part size or band height), JSON-ready."""
        chains = {d.codec: self.codecs[d.codec].zarr_config(d.dtype) for d in sharded_arrays()}
        return {"shard": list(self.shard), "chunk": list(self.chunk), **chains}


@dataclass
class ShardResult:
    """What building one shard produced."""

    task: str
    objects: list[ObjectRecord]
    input_bytes: int
    chunks: int
    seconds: float
    fingerprint: str = ""
    placements: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def tile_files(source: Storage, p: Placement) -> tuple[NpyTileFile, NpyTileFile]:
    """The placement's embeddings and scales files, with the headers the inventory read (no read here)."""
    emb_h = NpyHeader((1, 0), EMBEDDINGS.dtype, False, (p.height, p.width, BANDS), p.embeddings_offset)
    sc_h = NpyHeader((1, 0), SCALES.dtype, False, (p.height, p.width), p.scales_offset)
    return (NpyTileFile(source, p.embeddings_key, emb_h, "embeddings"),
            NpyTileFile(source, p.scales_key, sc_h, "scales"))


def build_shard(task: ShardTask, settings: EncodeSettings, source: Storage, store: Storage) -> ShardResult:
    """Write the task's embeddings and scales shards, each whole, committed only when complete."""
    t0 = time.perf_counter()
    sh, sw = settings.shard
    ch, cw = settings.chunk
    n_rows, n_cols = sh // ch, sw // cw
    band = max(ch, settings.band_rows - settings.band_rows % ch)
    r_base, c_base = task.shard_row * sh, task.shard_col * sw
    files = {p: tile_files(source, p) for p in task.placements}
    masks: dict[Placement, np.ndarray | None] = {}
    for p in task.placements:
        if p.landmask_key is None:
            masks[p] = None
            continue
        try:
            masks[p] = read_landmask(source, p.landmask_key)
        except ArchiveError:
            masks[p] = None  # an unreadable landmask is reported by inventory; the tile counts as all land
    emb_key, sc_key = task.key(EMBEDDINGS.name), task.key(SCALES.name)
    emb_sink = store.open_writer(emb_key, settings.part_size)
    try:
        sc_sink = store.open_writer(sc_key, settings.part_size)
    except BaseException:
        emb_sink.abort()  # its temporary file and writer thread go with it
        raise
    input_bytes = 0
    try:
        emb_spec, sc_spec = settings.codecs[EMBEDDINGS.codec], settings.codecs[SCALES.codec]
        emb_dt, sc_dt = EMBEDDINGS.dtype, SCALES.dtype
        emb_w = ShardWriter(emb_sink, n_rows * n_cols, emb_spec.encoder(emb_dt),
                            emb_spec.batch_encoder(emb_dt, BANDS * emb_dt.itemsize * ch * cw))
        sc_w = ShardWriter(sc_sink, n_rows * n_cols, sc_spec.encoder(sc_dt),
                           sc_spec.batch_encoder(sc_dt, sc_dt.itemsize * ch * cw))
        # one set of band buffers for the whole shard: the pages are faulted in once, not once per band
        emb_band = np.empty(band * sw * BANDS, dtype=emb_dt)
        emb_chunks = np.empty_like(emb_band)
        sc_band = np.empty(band * sw, dtype=sc_dt)
        for r0 in range(0, sh, band):
            r1 = min(sh, r0 + band)
            hits = [(p, p.rows_in(r_base + r0, r_base + r1), p.cols_in(c_base, c_base + sw))
                    for p in task.placements]  # canonical order: later tiles overwrite earlier ones
            hits = [(p, rr, cc) for p, rr, cc in hits if rr is not None and cc is not None]
            if not hits:
                continue  # nothing here: every chunk of the band stays empty
            # only the chunk columns the band's tiles touch are assembled
            j0 = (min(cc[0] for _, _, cc in hits) - c_base) // cw
            j1 = -(-(max(cc[1] for _, _, cc in hits) - c_base) // cw)
            x0 = c_base + j0 * cw
            rows, cols = r1 - r0, (j1 - j0) * cw
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
            chunks = band_to_chunks(emb, ch, cw, emb_chunks[:emb.size].reshape(chunk_layout(rows, cols, BANDS, ch, cw)))
            _emit(chunks, sc, r0 // ch, j0, n_cols, emb_w, sc_w)
        emb_w.finish()
        sc_w.finish()
        emb_sink.commit()
        sc_sink.commit()
    except BaseException:
        emb_sink.abort()
        sc_sink.abort()
        raise
    objects = [ObjectRecord.from_writer(emb_key, emb_sink, settings.part_size),
               ObjectRecord.from_writer(sc_key, sc_sink, settings.part_size)]
    return ShardResult(task.name, objects, input_bytes, emb_w.chunks_written, time.perf_counter() - t0,
                       placements=len(task.placements))


def _emit(emb_chunks: np.ndarray, sc: np.ndarray, first_row: int, first_col: int, n_cols: int,
          emb_w: ShardWriter, sc_w: ShardWriter) -> None:
    """Hand a band's non-empty inner chunks (C order) to the writers; a chunk whose scales are all +inf
    (no tile there) stays empty and reads as the fill value."""
    nr, nc, _, ch, cw = emb_chunks.shape
    sc_chunks = np.ascontiguousarray(sc.reshape(nr, ch, nc, cw).transpose(0, 2, 1, 3)).reshape(nr * nc, ch, cw)
    which = np.flatnonzero(~np.isposinf(sc_chunks).all(axis=(1, 2)))
    i, j = np.divmod(which, nc)
    ks = (first_row + i) * n_cols + first_col + j
    emb_w.add_run(ks, emb_chunks.reshape(nr * nc, *emb_chunks.shape[2:]), which)
    sc_w.add_run(ks, sc_chunks, which)
