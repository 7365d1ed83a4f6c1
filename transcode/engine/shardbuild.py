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
from transcode.legacy.npyheader import BANDS, EMBEDDINGS_DTYPE, SCALES_DTYPE, NpyHeader
from transcode.legacy.tiles import NpyTileFile, Window, read_landmask
from transcode.storage import DEFAULT_PART_SIZE, ObjectWriter, Storage

EMB_FILL = 0
SCALE_FILL = np.float32(np.inf)


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
        return {"shard": list(self.shard), "chunk": list(self.chunk),
                "embeddings": self.codecs["embeddings"].zarr_config(EMBEDDINGS_DTYPE),
                "scales": self.codecs["scales"].zarr_config(SCALES_DTYPE)}


@dataclass
class ObjectRecord:
    """One object written to the store, as the store manifest records it."""

    key: str
    size: int
    md5: str
    crc32c: str
    etag: str | None  # None for files: POSIX has no ETag
    part_size: int

    @classmethod
    def from_writer(cls, key: str, w: ObjectWriter, part_size: int) -> "ObjectRecord":
        return cls(key, w.size, w.md5.hexdigest(), f"{w.crc:08x}", w.etag, part_size)


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


def _tile_files(source: Storage, p: Placement) -> tuple[NpyTileFile, NpyTileFile]:
    emb_h = NpyHeader((1, 0), EMBEDDINGS_DTYPE, False, (p.height, p.width, BANDS), p.embeddings_offset)
    sc_h = NpyHeader((1, 0), SCALES_DTYPE, False, (p.height, p.width), p.scales_offset)
    return (NpyTileFile(source, p.embeddings_key, emb_h, "embeddings"),
            NpyTileFile(source, p.scales_key, sc_h, "scales"))


def sanitize_scales(scales: np.ndarray, landmask: np.ndarray | None) -> np.ndarray:
    """NaN for invalid scales (non-finite, <= 0, >= 1) and for water (landmask 0); in place."""
    with np.errstate(invalid="ignore"):
        bad = ~((scales > 0) & (scales < 1))  # NaN compares False, so NaN and ±inf are caught too
    scales[bad] = np.nan
    if landmask is not None:
        h, w = min(landmask.shape[0], scales.shape[0]), min(landmask.shape[1], scales.shape[1])
        water = landmask[:h, :w] == 0
        scales[:h, :w][water] = np.nan
    return scales


def build_shard(task: ShardTask, settings: EncodeSettings, source: Storage, store: Storage) -> ShardResult:
    """Write the task's embeddings and scales shards, each whole, committed only when complete."""
    t0 = time.perf_counter()
    sh, sw = settings.shard
    ch, cw = settings.chunk
    n_rows, n_cols = sh // ch, sw // cw
    band = max(ch, settings.band_rows - settings.band_rows % ch)
    r_base, c_base = task.shard_row * sh, task.shard_col * sw
    files = {p: _tile_files(source, p) for p in task.placements}
    masks: dict[Placement, np.ndarray | None] = {}
    for p in task.placements:
        if p.landmask_key is None:
            masks[p] = None
            continue
        try:
            masks[p] = read_landmask(source, p.landmask_key)
        except ArchiveError:
            masks[p] = None  # an unreadable landmask is reported by inventory; the tile counts as all land
    emb_sink = store.open_writer(task.key("embeddings"), settings.part_size)
    try:
        sc_sink = store.open_writer(task.key("scales"), settings.part_size)
    except BaseException:
        emb_sink.abort()  # its temporary file and writer thread go with it
        raise
    input_bytes = 0
    try:
        emb_spec, sc_spec = settings.codecs["embeddings"], settings.codecs["scales"]
        emb_w = ShardWriter(emb_sink, n_rows * n_cols, emb_spec.encoder(EMBEDDINGS_DTYPE),
                            emb_spec.batch_encoder(EMBEDDINGS_DTYPE, BANDS * ch * cw))
        sc_w = ShardWriter(sc_sink, n_rows * n_cols, sc_spec.encoder(SCALES_DTYPE),
                           sc_spec.batch_encoder(SCALES_DTYPE, SCALES_DTYPE.itemsize * ch * cw))
        # one set of band buffers for the whole shard: the pages are faulted in once, not once per band
        emb_band = np.empty(band * sw * BANDS, dtype=EMBEDDINGS_DTYPE)
        emb_chunks = np.empty_like(emb_band)
        sc_band = np.empty(band * sw, dtype=SCALES_DTYPE)
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
            sc.fill(SCALE_FILL)
            targets = [(slice(rr[0] - r_base - r0, rr[1] - r_base - r0), slice(cc[0] - x0, cc[1] - x0))
                       for _, rr, cc in hits]
            covered = np.zeros((rows, cols), dtype=bool)
            for dst in targets:
                covered[dst] = True
            if not covered.all():  # clear only what no tile overwrites (a full clear costs a memset per band)
                emb[~covered] = EMB_FILL
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
    objects = [ObjectRecord.from_writer(task.key("embeddings"), emb_sink, settings.part_size),
               ObjectRecord.from_writer(task.key("scales"), sc_sink, settings.part_size)]
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
