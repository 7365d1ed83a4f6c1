"""Build one shard set (embeddings, scales and the nested depths' arrays) from its tiles: read windows band by band,
apply the scale sentinels, fold the valid pixels into the shard's stretch statistics while they are in hand, and
stream the inner chunks of every array through the shard writers into the store."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from transcode.codecs.spec import CodecSpec
from transcode.engine.encodepool import REMOTE_AHEAD_BYTES, REMOTE_FETCHES, BandPipeline, ReadAhead, resolve_threads
from transcode.engine.plan import Placement, ShardTask
from transcode.engine.shardwriter import ShardWriter
from transcode.engine.stretchstats import BLOCK, ShardStats, StripShare
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

BAND_BUDGET = 192 << 20  # the bands in flight of one shard build (their buffers and stretch products) stay below
# ... and, with a remote source's read-ahead and the store's writer, within this much: a worker stays within 512 MiB
WORKER_BUFFERS = 256 << 20
BAND_FLOOR = 64 << 20  # the bands' share below which an S3 writer keeps one part in flight rather than its default


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
    threads: int = 1  # threads that encoded it
    stages: dict[str, float] = field(default_factory=dict)  # seconds in each stage, summed over threads (StageClock)

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
        self.chunk_nbytes = decl.dtype.itemsize * self.bands * self.ch * self.cw
        self.writer = ShardWriter(sink, n_chunks, codec.encoder(decl.dtype),
                                  codec.batch_encoder(decl.dtype, self.chunk_nbytes))

    def select(self, empty: np.ndarray, r0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        """The band's non-empty inner chunks: their positions in the shard and in the band's chunk grid (C order),
        `empty` per pixel (a chunk whose pixels are all empty stays absent, reading as the fill value), the band
        starting at shard row `r0` and shard column `x0`."""
        rows, cols = empty.shape
        nr, nc = rows // self.ch, cols // self.cw
        blank = empty.reshape(nr, self.ch, nc, self.cw).all(axis=(1, 3)).ravel()
        which = np.flatnonzero(~blank)
        i, j = np.divmod(which, nc)
        return (r0 // self.ch + i) * self.n_cols + x0 // self.cw + j, which

    def encode_planes(self, pipe: BandPipeline, emb: np.ndarray, empty: np.ndarray, r0: int, x0: int,
                      out: np.ndarray | None, ahead: int | None = None) -> list[_Encoded]:
        """Encode this array's inner chunks of a band of embeddings (rows, cols, 128), chunk row by chunk row
        (their first `self.bands` bands, reordered into planes on this thread's scratch), into `out`. With `ahead`,
        `out` is the band's own buffer, `emb` starting `ahead` bytes into it: chunk row i's bytes end before
        the pixels of row i + 1 begin, so the band is overwritten only where it was already reordered."""
        rows, cols = empty.shape
        nc = cols // self.cw
        ks, which = self.select(empty, r0, x0)
        bounds = np.searchsorted(which, np.arange(0, rows // self.ch + 1) * nc)
        view = None if out is None else memoryview(out)
        row_bytes = self.ch * cols * emb.shape[2]
        pieces, fill = [], 0
        for i in range(rows // self.ch):
            lo, hi = bounds[i], bounds[i + 1]
            if lo == hi:
                continue
            src = emb[i * self.ch:(i + 1) * self.ch]
            if self.bands < src.shape[2]:
                part = pipe.scratch("part", self.ch * cols * self.bands, src.dtype).reshape(self.ch, cols, self.bands)
                np.copyto(part, src[:, :, :self.bands])
                src = part
            layout = chunk_layout(self.ch, cols, self.bands, self.ch, self.cw)
            chunks = band_to_chunks(src, self.ch, self.cw, pipe.scratch("chunks", src.size, src.dtype).reshape(layout))
            end = len(view) if ahead is None or view is None else ahead + (i + 1) * row_bytes
            sizes, data = self.writer.encode(chunks.reshape(nc, *layout[2:]), which[lo:hi] - i * nc,
                                             None if view is None else view[fill:end])
            if isinstance(data, memoryview):
                fill += len(data)
            pieces.append(_Encoded(ks[lo:hi], sizes, data))
        return pieces


@dataclass
class _Encoded:
    """A run of one array's inner chunks, encoded: their positions in the shard, sizes and bytes."""

    ks: np.ndarray
    sizes: np.ndarray
    data: bytes | memoryview


@dataclass
class _Band:
    """Rows [r0, r1) of the shard, the tiles that reach them (canonical order) and the inner-chunk columns they
    span: zone column `x0`, `cols` pixels wide."""

    r0: int
    r1: int
    hits: list[tuple[Placement, tuple[int, int], tuple[int, int]]]
    x0: int
    cols: int

    @property
    def rows(self) -> int:
        return self.r1 - self.r0

    @cached_property
    def windows(self) -> list[Window]:
        """Each hit's window in its own tile's pixels (read ahead, then placed)."""
        return [Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col) for p, rr, cc in self.hits]


@dataclass
class _BandOutput:
    """What one band produced: bytes read, its strips' stretch statistics shares, each array's encoded runs."""

    input_bytes: int
    shares: list[StripShare]
    runs: list[list[_Encoded]]


class _Slot:
    """The buffers of one band in flight: its embeddings (with room ahead of them for their encoded bytes), its
    scales, the encoded bytes of every other array, and its stretch statistics' block products."""

    def __init__(self, rows: int, width: int, outs: list[_Output]) -> None:
        emb, pixels = outs[0], rows * width
        n = pixels // (emb.ch * emb.cw)
        self.ahead = max(0, emb.writer.worst(n) - n * emb.chunk_nbytes)
        self.emb = np.empty(self.ahead + pixels * BANDS, np.uint8)
        self.scales = np.empty(pixels, SCALES.dtype)
        self.outs = [np.empty(o.writer.worst(pixels // (o.ch * o.cw)), np.uint8) for o in outs[1:]]
        # kept until they are folded in band order: one per BLOCK valid pixels of each strip (pages are touched
        # only when statistics are collected)
        self.products = np.empty((_blocks(rows, width, emb.ch), BANDS, BANDS), np.float64)

    @staticmethod
    def nbytes(rows: int, width: int, outs: list[_Output]) -> int:
        """What one slot holds (the slots of a shard build are bounded by this)."""
        per_pixel = BANDS + SCALES.dtype.itemsize + sum(o.bands * o.decl.dtype.itemsize for o in outs[1:])
        return rows * width * per_pixel + _blocks(rows, width, outs[0].ch) * BANDS * BANDS * 8

    def band(self, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """The band's embeddings (rows, cols, 128) and scales (rows, cols)."""
        emb = self.emb[self.ahead:self.ahead + rows * cols * BANDS].view(EMBEDDINGS.dtype).reshape(rows, cols, BANDS)
        return emb, self.scales[:rows * cols].reshape(rows, cols)


def _blocks(rows: int, width: int, strip: int) -> int:
    """Stretch statistics blocks a band may have at most: its strips' valid pixels, BLOCK at a time."""
    return -(-rows // strip) * -(-(strip * width) // BLOCK)


def _open(store: Storage, outputs: list[tuple[ArrayDecl, str]], zone: Zone, settings: EncodeSettings,
          in_flight: int | None = None) -> list[_Output]:
    """A writer per array; a failure aborts the ones already open (their temporary files and threads go)."""
    opened: list[_Output] = []
    try:
        for decl, key in outputs:
            sink = store.open_writer(key, settings.part_size, in_flight)
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


def _bands(task: ShardTask, shard: tuple[int, int], band: int, wide: int) -> list[_Band]:
    """The shard's bands that any tile reaches, each spanning only the inner-chunk columns its tiles touch."""
    sh, sw = shard
    r_base, c_base = task.shard_row * sh, task.shard_col * sw
    out = []
    for r0 in range(0, sh, band):
        r1 = min(sh, r0 + band)
        hits = [(p, p.rows_in(r_base + r0, r_base + r1), p.cols_in(c_base, c_base + sw))
                for p in task.placements]  # canonical order: later tiles overwrite earlier ones
        hits = [(p, rr, cc) for p, rr, cc in hits if rr is not None and cc is not None]
        if not hits:
            continue  # nothing here: every chunk of the band stays empty
        j0 = (min(cc[0] for _, _, cc in hits) - c_base) // wide
        j1 = -(-(max(cc[1] for _, _, cc in hits) - c_base) // wide)
        out.append(_Band(r0, r1, hits, c_base + j0 * wide, (j1 - j0) * wide))
    return out


class _ShardBuild:
    """One shard set being built: the band reader (I/O thread) and encoder (worker threads) over shared state
    that only the calling thread changes."""

    def __init__(self, task: ShardTask, settings: EncodeSettings, source: Storage, outs: list[_Output],
                 stats: ShardStats | None, pipe: BandPipeline) -> None:
        self.task, self.settings, self.outs, self.stats, self.pipe = task, settings, outs, stats, pipe
        self.r_base = task.shard_row * settings.shard[0]
        self.c_base = task.shard_col * settings.shard[1]
        self.files = {p: tile_files(source, p) for p in task.placements}
        self.remote = source.remote
        self.masks: dict[Placement, np.ndarray | None] = {}
        self.ahead: ReadAhead | None = None

    def read_masks(self, source: Storage) -> None:
        """Every placement's landmask (None: all land; an unreadable one is reported by inventory)."""

        def mask(p: Placement) -> np.ndarray | None:
            if p.landmask_key is None:
                return None
            try:
                return read_landmask(source, p.landmask_key)
            except ArchiveError:
                return None  # an unreadable landmask is reported by inventory; the tile counts as all land

        got = self.pipe.fetch_all([lambda p=p: mask(p) for p in self.task.placements])
        self.masks = dict(zip(self.task.placements, got))

    def read_ahead(self, bands: list[_Band]) -> None:
        """On a remote source, fetch the bands' windows (embeddings and scales each a ranged GET) ahead of the band
        being read, within the pipeline's read-ahead budget, so that the requests' latency overlaps encoding."""
        if not self.remote:
            return

        def calls(b: _Band) -> list:
            return [lambda f=f, w=w: f.fetch(w) for (p, _, _), w in zip(b.hits, b.windows) for f in self.files[p]]

        def nbytes(b: _Band) -> int:
            return sum(f.fetch_size(w) for (p, _, _), w in zip(b.hits, b.windows) for f in self.files[p])

        self.ahead = self.pipe.read_ahead(bands, calls, nbytes)

    def read(self, b: _Band, slot: _Slot) -> int:
        """Read the band's windows into the slot, scales sanitised; returns the bytes read. On a remote source
        the windows come from the read-ahead, then are placed in canonical order."""
        emb, sc = slot.band(b.rows, b.cols)
        sc.fill(SCALES.fill)
        targets = [(slice(rr[0] - self.r_base - b.r0, rr[1] - self.r_base - b.r0), slice(cc[0] - b.x0, cc[1] - b.x0))
                   for _, rr, cc in b.hits]
        covered = np.zeros((b.rows, b.cols), dtype=bool)
        for dst in targets:
            covered[dst] = True
        if not covered.all():  # clear only what no tile overwrites (a full clear costs a memset per band)
            emb[~covered] = EMBEDDINGS.fill
        fetched = self.ahead.take(b) if self.ahead is not None else None
        read = 0
        for k, ((p, _, _), dst, win) in enumerate(zip(b.hits, targets, b.windows)):
            e_file, s_file = self.files[p]
            if fetched is None:
                e_file.read_into(win, emb[dst])
                s = s_file.read(win)
            else:
                emb[dst] = fetched[2 * k]
                s = np.array(fetched[2 * k + 1])
            mask = self.masks[p]
            sanitize_scales(s, None if mask is None else mask[win.row0:win.row1, win.col0:win.col1])
            sc[dst] = s
            read += emb[dst].nbytes + s.nbytes
        return read

    def encode(self, b: _Band, slot: _Slot, read: int) -> _BandOutput:
        """The band's stretch statistics shares and every array's encoded inner chunks (on a worker thread)."""
        emb, sc = slot.band(b.rows, b.cols)
        emb_out, sc_out, depth_outs = self.outs[0], self.outs[1], self.outs[2:]
        ch = emb_out.ch
        shares = []
        if self.stats is not None:  # strip by strip of inner chunk rows: the blocking depends on nothing else
            block = self.pipe.scratch("stats", BLOCK * BANDS * 8, np.float64).reshape(BLOCK, BANDS)
            used = 0
            for i in range(0, b.rows, ch):
                share = self.stats.measure(emb[i:i + ch], sc[i:i + ch], self.r_base + b.r0 + i, b.x0, block,
                                           slot.products[used:])
                if share is not None:
                    shares.append(share)
                    used += len(share.m_parts)
        empty = np.isposinf(sc)
        x0 = b.x0 - self.c_base
        runs: list[list[_Encoded]] = [[], []]
        for o, out in zip(depth_outs, slot.outs[1:]):
            runs.append(o.encode_planes(self.pipe, emb, empty, b.r0, x0, out))
        # the band's own buffer takes its encoded bytes: the depths above read it first
        runs[0] = emb_out.encode_planes(self.pipe, emb, empty, b.r0, x0, slot.emb, ahead=slot.ahead)
        nr, nc = b.rows // sc_out.ch, b.cols // sc_out.cw
        sc_chunks = np.ascontiguousarray(sc.reshape(nr, sc_out.ch, nc, sc_out.cw).transpose(0, 2, 1, 3))
        ks, which = sc_out.select(empty, b.r0, x0)
        sizes, data = sc_out.writer.encode(sc_chunks.reshape(nr * nc, sc_out.ch, sc_out.cw), which,
                                           memoryview(slot.outs[0]))
        runs[1] = [_Encoded(ks, sizes, data)]
        return _BandOutput(read, shares, runs)


def buffer_plan(source: Storage, store: Storage, part_size: int) -> tuple[int | None, int]:
    """(parts in flight for the store's writers, None for the store's default; the bytes the bands may take):
    within WORKER_BUFFERS, after a remote source's read-ahead (the windows fetched ahead and those of the band
    being placed) and the store's writer (an S3 writer's parts: in flight + 1). Where the default parts in flight
    would leave the bands less than BAND_FLOOR, one part goes at a time."""
    room = WORKER_BUFFERS - (2 * REMOTE_AHEAD_BYTES if source.remote else 0)
    in_flight = None if room - store.writer_memory(part_size) >= BAND_FLOOR else 1
    return in_flight, max(0, min(BAND_BUDGET, room - store.writer_memory(part_size, in_flight)))


def _band_plan(band: int, tall: int, sw: int, outs: list[_Output], threads: int,
               budget: int | None = None) -> tuple[int, int]:
    """(band rows, bands in flight): one band per encoding thread plus one read ahead, as many as `budget`
    (BAND_BUDGET by default) holds (at least two), the bands made lower (down to one row of the tallest inner
    chunks) where that lets more threads work. The band height does not change the bytes."""
    budget = BAND_BUDGET if budget is None else budget
    while band > tall and budget // _Slot.nbytes(band, sw, outs) < threads + 1:
        band = max(tall, band // 2 - band // 2 % tall)
    return band, max(2, min(threads + 1, budget // _Slot.nbytes(band, sw, outs)))


def build_shard(task: ShardTask, settings: EncodeSettings, source: Storage, store: Storage,
                stretch: StretchTarget | None = None, threads: int | None = None) -> ShardResult:
    """Write the task's shard of every sharded array, each whole and committed only when all are complete
    (shallow depths first, then scales, `embeddings` last); with `stretch`, its stretch statistics after them.
    `threads` encode it (None: every core this process may use); the bytes are the same for any number."""
    t0 = time.perf_counter()
    threads = resolve_threads(threads)
    sh, sw = settings.shard
    # the zone as the arrays see it (only the shard and chunk sides and the band counts matter here)
    zone = Zone(ZoneGrid(task.zone, 0.0, 0.0, sh, sw), (task.year,), settings.shard, settings.chunk)
    decls = settings.arrays()
    in_flight, budget = buffer_plan(source, store, settings.part_size)
    outs = _open(store, [(d, task.key(d.name)) for d in decls], zone, settings, in_flight)
    emb_out = outs[0]
    # a band holds whole inner chunks of every array (the depths' are power-of-two multiples of the chunk)
    tall = max(o.ch for o in outs)
    wide = max(o.cw for o in outs)
    band, slots = _band_plan(max(tall, settings.band_rows - settings.band_rows % tall), tall, sw, outs, threads,
                             budget)
    threads = min(threads, slots)  # a band is one thread's work: more threads than bands in flight would idle
    # the encoded bytes are appended below in band order
    stats = ShardStats(task.zone, task.year, stretch.sample_size) if stretch else None
    input_bytes = 0
    try:
        with BandPipeline(threads, slots, lambda: _Slot(band, sw, outs), REMOTE_FETCHES if source.remote else 0) as pipe:
            build = _ShardBuild(task, settings, source, outs, stats, pipe)
            build.read_masks(source)
            bands = _bands(task, settings.shard, band, wide)
            build.read_ahead(bands)
            clock = pipe.clock
            for _, done in pipe.run(bands, build.read, build.encode):
                input_bytes += done.input_bytes
                for share in done.shares:
                    stats.fold(share)
                with clock.timing("write"):
                    for o, runs in zip(outs, done.runs):
                        for run in runs:
                            o.writer.append(run.ks, run.sizes, run.data)
        with clock.timing("write"):
            for o in outs:
                o.writer.finish()
            # an embeddings shard's presence implies every other one of its set: it is committed last
            for o in [*outs[2:], outs[1], emb_out]:
                o.sink.commit()
    except BaseException:
        for o in outs:
            o.sink.abort()
        raise
    objects = [ObjectRecord.from_writer(o.key, o.sink, settings.part_size) for o in outs]
    if stats is not None:
        with clock.timing("write"):
            store.put(stretch.key, stats.partial().to_bytes())
    return ShardResult(task.name, objects, input_bytes, emb_out.writer.chunks_written, time.perf_counter() - t0,
                       placements=len(task.placements), valid_pixels=stats.n if stats is not None else None,
                       threads=threads, stages={k: round(v, 6) for k, v in clock.seconds.items()})
