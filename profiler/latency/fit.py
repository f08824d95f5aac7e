"""Latency models fitted from measurements: the paper's affine fit per condition, and a tile-aware refinement.

The paper (section 4.2) models one condition's latency as `a * FLOPs + b` with scikit-learn's LinearRegression. CPU
kernels (XNNPACK, and the phones' ones) compute output channels (and sometimes input channels) in fixed-width tiles,
so a conv with 33 output channels costs about as much as one with 64 when the tile is 32. The tile-aware fit computes
FLOPs on channels rounded up to a tile, detects the tile from the data by cross-validated error, and weights the fit by
1/latency^2 so that it minimises relative (not absolute) error, which is what "within +-10%" asks. It is used only
where its cross-validated error is lower than the paper's fit; the paper's fit is kept alongside for comparison.

A kernel may also have a narrower tile for few channels (a narrower micro-kernel for small output counts; a single
input channel, such as a grayscale image, far cheaper than a full input tile). So a family (conv type) may also get
small tiles S < T (S divides T): counts up to T are rounded up to S, larger ones to T. They are detected with the
tiles, from samples with few channels, and equal the tiles (no ladder) when nothing shows one.

A family may get one extra term, chosen like the tiles by cross-validated error over the family and used by a
condition only where it lowers that condition's own: depthwise kernels run channel counts that are not a multiple of
their SIMD width on a slower path (`align` A: a second slope for cout % A != 0).

A family may also get a weight knee per kernel size (WeightKnee): each FLOP of a conv whose weights exceed a
cache-sized `mb` costs `1 + step + slope * log2(weights / mb)` times more. XNNPACK's conv streams all of a layer's
weights once per block of output pixels, so once they no longer fit a cache level they come from a slower one, for
every block. Its depthwise kernels for small kernel sizes hold all taps of a tile of channels for each output pixel,
so theirs fall out of L1 at a few kB of weights and every channel beyond costs a fixed share more (a jump), while
larger kernels go over the taps in several passes and show no knee: hence a step as well as a slope, and one knee per
kernel size. Within one condition weight size is proportional to FLOPs, so no per-condition term can show it; the
knee is shared by the family's conditions of one kernel size.

The measurements that showed each of these terms on the project's machine are in docs/benchmarks.md ("What the
latency fit's terms were found on").

Slope and intercept are constrained non-negative: a latency model must never price a small conv (or a whole
pruned network) at negative time, which an unconstrained intercept does whenever the smallest samples sit below the
line. Cross-validation is leave-one-out: exactly the constrained fit without each sample (for the line, in closed
form from leave-one-out sums).
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from profiler.cost import (
    NO_KNEE,
    NO_TILES,
    Count,
    RoundUp,
    Tiles,
    WeightKnee,
    conv_latency_ms,
    conv_mflops,
    conv_weights,
    in_network_ms,
    megabytes,
    nearest_int,
    round_up,
)
from profiler.spec import ConditionKey, ConvSpec

TILE_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
# A larger tile must beat the best smaller one by this relative margin of CV error: with ~10 samples per condition,
# noise alone would otherwise pick a random tile.
TILE_MARGIN = 0.03
LADDER_STEPS = 2  # small tiles tried below a cout tile: a half and a quarter of it
ALIGN_CANDIDATES = (4, 8, 16)
# An extra term is a third parameter for ~12 samples: the family's mean cross-validated error must drop by this
# share before any condition gets one, and a condition's own by TILE_MARGIN, so noise does not buy a slope.
TERM_MARGIN = 0.05
MIN_PER_SIDE = 2  # aligned and misaligned samples a condition needs before it can have a misaligned slope
MIN_CV_SAMPLES = 3
# cache-sized, half an octave apart: from half a 32 kB L1 to the L3s of phones and PCs
KNEE_MB_CANDIDATES = tuple(2.0 ** (k / 2) for k in range(-12, 11))
KNEE_SLOPE_CANDIDATES = tuple(round(0.05 * i, 2) for i in range(11))
KNEE_STEP_CANDIDATES = tuple(round(0.1 * i, 1) for i in range(6))
# Conditions with samples on both sides that a knee needs: with ~1,500 candidates, one or two conditions' noise finds
# one that beats TERM_MARGIN (here one 1x1 condition alone chose a 2 MB knee).
MIN_KNEE_CONDITIONS = 3


def tiled_mflops(spec: ConvSpec, cout_tile: int = 1, cin_tile: int = 1, cout_small_tile: int | None = None,
                 cin_small_tile: int | None = None) -> float:
    """2 x MACs with these tiles (profiler.cost.conv_mflops), in millions: the unit of the fitted slope."""
    return conv_mflops(spec, tiles=(cout_tile, cin_tile, cout_small_tile or cout_tile, cin_small_tile or cin_tile))


def _costs(specs: list[ConvSpec], tiles: Tiles | None = None, knee: WeightKnee = NO_KNEE) -> np.ndarray:
    """Each sample's MFLOPs as a condition with these tiles and this knee prices them."""
    return np.array([conv_mflops(s, tiles=tiles, knee=knee) for s in specs])


@dataclass(frozen=True)
class LinearFit:
    """latency_ms = a * x + b, with its errors on the data it was fitted to (mape) and held out (cv_mape)."""

    a: float
    b: float
    n: int
    r2: float | None
    mape: float
    cv_mape: float | None

    def predict(self, x: float) -> float:
        return self.a * x + self.b


def positive_latencies(ms: list[float], what: str) -> np.ndarray:
    """The latencies as an array; ValueError unless all are positive and finite (a fit divides by them)."""
    y = np.asarray(ms, dtype=float)
    if np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"latencies must be positive and finite for {what}")
    return y


def mape(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction (0.05 = 5%)."""
    return float(np.mean(np.abs(pred - y) / y))


def r2(pred: np.ndarray, y: np.ndarray) -> float | None:
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / total


def nonneg_line(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float] | None:
    """Weighted least squares of y = a * x + b subject to a >= 0 and b >= 0; None when x has fewer than two values.

    With two parameters the constrained optimum is the unconstrained one when that is feasible, else the better of
    the two boundary fits (b = 0: a line through the origin; a = 0: a constant), since the problem is convex.
    """
    if len(np.unique(x)) < 2:
        return None
    sw = weights.sum()
    mx, my = (weights * x).sum() / sw, (weights * y).sum() / sw
    a = (weights * (x - mx) * (y - my)).sum() / (weights * (x - mx) ** 2).sum()
    if a >= 0 and my - a * mx >= 0:
        return float(a), float(my - a * mx)
    through_origin = (max(0.0, (weights * x * y).sum() / (weights * x * x).sum()), 0.0)
    constant = (0.0, max(0.0, my))
    return min((through_origin, constant), key=lambda ab: float((weights * (y - ab[0] * x - ab[1]) ** 2).sum()))


def loo_predictions(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Leave-one-out predictions of the constrained weighted fit (exactly nonneg_line refitted without each sample);
    None when some sample cannot be predicted from the others (they hold fewer than two distinct x values).

    Vectorised: each refit's weighted sums are the totals minus that sample's terms, and nonneg_line's three
    candidates (free line, line through the origin, constant) are closed forms of those sums. Tile detection runs
    this for every candidate tile of every condition, so refitting one by one would dominate building a table.
    """
    values, counts = np.unique(x, return_counts=True)
    if len(values) < 2 or (len(values) == 2 and counts.min() == 1):
        return None
    w, wx, wy = weights, weights * x, weights * y
    sw, sx, sy = w.sum() - w, wx.sum() - wx, wy.sum() - wy
    sxx, sxy = (wx * x).sum() - wx * x, (wx * y).sum() - wx * y
    syy = (wy * y).sum() - wy * y
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (sxy - sx * sy / sw) / (sxx - sx * sx / sw)
        b = (sy - a * sx) / sw
        origin_a = np.maximum(0.0, sxy / sxx)
    constant_b = np.maximum(0.0, sy / sw)

    def sse(a_, b_):
        return syy - 2 * a_ * sxy - 2 * b_ * sy + a_ * a_ * sxx + 2 * a_ * b_ * sx + b_ * b_ * sw

    use_origin = sse(origin_a, 0.0) <= sse(0.0, constant_b)
    free = (a >= 0) & (b >= 0)
    a = np.where(free, a, np.where(use_origin, origin_a, 0.0))
    b = np.where(free, b, np.where(use_origin, 0.0, constant_b))
    return a * x + b


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x, np.ones_like(x)])


def fit_line(x: np.ndarray, y: np.ndarray, relative: bool) -> LinearFit:
    """Affine fit of y on x with scikit-learn's LinearRegression (the paper's method), slope and intercept >= 0.

    `relative=True` weights each sample by 1/y^2, i.e. minimises squared relative error. One sample gives a line
    through the origin; fewer than MIN_CV_SAMPLES give no cross-validated error.
    """
    from sklearn.linear_model import LinearRegression

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) == 0:
        raise ValueError("cannot fit a line to no samples")
    if len(np.unique(x)) < 2:
        a = float(np.mean(y / x)) if np.all(x > 0) else 0.0
        b = 0.0 if np.all(x > 0) else float(np.mean(y))
        pred = a * x + b
        return LinearFit(a, b, len(x), r2(pred, y), mape(pred, y), None)
    weights = 1.0 / y**2 if relative else np.ones_like(y)
    # The intercept is a second non-negative coefficient on a column of ones, so `positive` constrains both.
    model = LinearRegression(fit_intercept=False, positive=True).fit(_design(x), y, sample_weight=weights)
    a, b = (float(c) for c in model.coef_)
    pred = a * x + b
    loo = loo_predictions(x, y, weights) if len(x) >= MIN_CV_SAMPLES else None
    return LinearFit(a, b, len(x), r2(pred, y), mape(pred, y), None if loo is None else mape(loo, y))


def _candidate_cv(x: np.ndarray, y: np.ndarray) -> float | None:
    loo = loo_predictions(x, y, 1.0 / y**2)
    return None if loo is None else mape(loo, y)


def _cout_smalls(cout_tile: int) -> list[int]:
    """The small-tile candidates of a cout tile: itself (no ladder), then a half and a quarter of it."""
    smalls = [cout_tile]
    while len(smalls) <= LADDER_STEPS and smalls[-1] % 2 == 0:
        smalls.append(smalls[-1] // 2)
    return smalls


def _cin_smalls(cin_tile: int) -> list[int]:
    """The small-tile candidates of a cin tile: itself (no ladder) or 1 (few input channels are not rounded)."""
    return [cin_tile] if cin_tile == 1 else [cin_tile, 1]


def _ladder(tiles: Tiles) -> int:
    """How much of a ladder a candidate has (0: none), to order candidates from the simplest."""
    return (tiles[0] - tiles[2]) + (tiles[1] - tiles[3])


def _tile_candidates(specs: list[ConvSpec], ladders: bool) -> list[Tiles]:
    """Tiles no larger than the largest channel counts seen (a larger one makes every sample the same size), each
    with its small tiles when `ladders`."""
    max_cout = max(s.cout for s in specs)
    max_cin = max(s.cin // s.groups for s in specs)
    cout_tiles = [t for t in TILE_CANDIDATES if t <= max_cout]
    cin_tiles = [1] if specs[0].conv_type == "depthwise" else [t for t in TILE_CANDIDATES if t <= max_cin]
    return [(c, i, cs, is_) for c in cout_tiles for i in cin_tiles
            for cs in (_cout_smalls(c) if ladders else [c]) for is_ in (_cin_smalls(i) if ladders else [i])]


def tile_errors(specs: list[ConvSpec], ms: np.ndarray, ladders: bool = False,
                knee: WeightKnee = NO_KNEE) -> dict[Tiles, float]:
    """Leave-one-out MAPE of the relative tiled-FLOPs fit (with `knee`) for every candidate that can be
    cross-validated."""
    errors = {}
    for tiles in _tile_candidates(specs, ladders):
        cv = _candidate_cv(_costs(specs, tiles, knee), ms)
        if cv is not None:
            errors[tiles] = cv
    return errors


def _pick(errors: dict[Tiles, float]) -> Tiles | None:
    """The lowest error; a larger tile pair, or a ladder, must beat every simpler winner by TILE_MARGIN, so noise
    does not pick it."""
    best = None
    for tiles in sorted(errors, key=lambda t: (t[0] * t[1], _ladder(t), t)):
        if best is None or errors[tiles] < errors[best] * (1 - TILE_MARGIN):
            best = tiles
    return best


def detect_tiles(specs: list[ConvSpec], ms: np.ndarray) -> tuple[int, int, float | None]:
    """The (cout_tile, cin_tile) of one condition with the lowest leave-one-out error, and that error."""
    errors = tile_errors(specs, ms)
    best = _pick(errors)
    return (1, 1, None) if best is None else (best[0], best[1], errors[best])


def detect_shared_tiles(conditions: list[tuple[list[ConvSpec], np.ndarray]]) -> Tiles:
    """The tiles, with their ladder, that fit a family of conditions (one conv type) best on average.

    A kernel's tile is a property of the conv type on a device, not of one input size, so pooling the evidence of
    all conditions picks it far more reliably than ~10 samples of one condition can. Tile and small tile are chosen
    together: without the ladder, few-channel samples make a tile of 16 look better than the real 32. A condition
    where a candidate cannot be cross-validated counts with its untiled error.
    """
    per_condition = [tile_errors(specs, ms, ladders=True) for specs, ms in conditions if len(specs) >= MIN_CV_SAMPLES]
    per_condition = [e for e in per_condition if NO_TILES in e]
    if not per_condition:
        return NO_TILES
    candidates = set().union(*per_condition)
    mean = {tiles: float(np.mean([e.get(tiles, e[NO_TILES]) for e in per_condition])) for tiles in candidates}
    return _pick(mean) or NO_TILES


@dataclass(frozen=True)
class ConditionModel:
    """The fitted latency model of one condition. `predict_ms` uses `a_ms_per_mflop`, `b_ms` and the tiles;
    `affine` is the paper's plain fit on exact FLOPs, kept for comparison (and used when `model == "affine"`)."""

    key: ConditionKey
    model: str  # "tile" | "affine"
    a_ms_per_mflop: float
    b_ms: float
    cout_tile: int
    cin_tile: int
    n: int
    r2: float | None
    mape: float
    cv_mape: float | None
    affine: LinearFit = field(compare=False)
    cout_small_tile: int | None = None  # None: no ladder (see profiler.cost.effective_channels)
    cin_small_tile: int | None = None
    align: int = 1  # > 1: counts off a multiple of it use misaligned_a_ms_per_mflop
    misaligned_a_ms_per_mflop: float | None = None
    knee: WeightKnee | None = None  # the family's weight knee, None: none

    def slope(self, cout: int) -> float:
        """The slope for this output-channel count: the misaligned one where the condition has one and cout needs it."""
        if self.misaligned_a_ms_per_mflop is not None and cout % self.align:
            return self.misaligned_a_ms_per_mflop
        return self.a_ms_per_mflop

    @property
    def tiles(self) -> Tiles:
        return (self.cout_tile, self.cin_tile, self.cout_small_tile or self.cout_tile,
                self.cin_small_tile or self.cin_tile)

    def latency_ms(self, spec: ConvSpec, cin: Count = None, cout: Count = None, rounding: RoundUp = round_up) -> Count:
        """This condition's latency of `spec` with `cin` / `cout` channels (default: the spec's; soft counts too,
        with `rounding` the search's straight-through one): the slope of the (rounded) count, on its tiled FLOPs
        and the knee."""
        count = spec.cout if cout is None else cout
        return conv_latency_ms(self.slope(nearest_int(count)), self.b_ms, spec, cin, cout, self.tiles, self.knee,
                               rounding)

    def predict_ms(self, spec: ConvSpec) -> float:
        return self.latency_ms(spec)

    def predict_affine_ms(self, spec: ConvSpec) -> float:
        return self.affine.predict(conv_mflops(spec))

    def to_dict(self) -> dict:
        affine = {"a_ms_per_mflop": self.affine.a, "b_ms": self.affine.b, "r2": self.affine.r2,
                  "mape": self.affine.mape, "cv_mape": self.affine.cv_mape}
        key = asdict(self.key)
        return {"key": str(self.key), **key, "model": self.model, "a_ms_per_mflop": self.a_ms_per_mflop,
                "b_ms": self.b_ms, "cout_tile": self.cout_tile,
                "cout_small_tile": self.cout_small_tile or self.cout_tile,
                "cin_tile": self.cin_tile, "cin_small_tile": self.cin_small_tile or self.cin_tile,
                "align": self.align, "misaligned_a_ms_per_mflop": self.misaligned_a_ms_per_mflop,
                "weight_knee_mb": self.knee.mb if self.knee else None,
                "weight_knee_slope": self.knee.slope if self.knee else None,
                "weight_knee_step": self.knee.step if self.knee else None, "n": self.n,
                "r2": self.r2, "mape": self.mape, "cv_mape": self.cv_mape, "affine": affine}

    @classmethod
    def from_dict(cls, d: dict) -> ConditionModel:
        key = ConditionKey(d["h"], d["w"], d["kernel"], d["stride"], d["conv_type"], d["activation"], d["groups"])
        af = d["affine"]
        affine = LinearFit(af["a_ms_per_mflop"], af["b_ms"], d["n"], af["r2"], af["mape"], af["cv_mape"])
        # absent in schema_version 1 tables: no ladder
        cout_small, cin_small = d.get("cout_small_tile", d["cout_tile"]), d.get("cin_small_tile", d["cin_tile"])
        return cls(key, d["model"], d["a_ms_per_mflop"], d["b_ms"], d["cout_tile"], d["cin_tile"], d["n"], d["r2"],
                   d["mape"], d["cv_mape"], affine, None if cout_small == d["cout_tile"] else cout_small,
                   None if cin_small == d["cin_tile"] else cin_small, d.get("align", 1),
                   d.get("misaligned_a_ms_per_mflop"),
                   WeightKnee(d["weight_knee_mb"], d["weight_knee_slope"], d.get("weight_knee_step") or 0.0)
                   if d.get("weight_knee_mb") else None)


def fit_condition(key: ConditionKey, specs: list[ConvSpec], ms: list[float],
                  shared_tiles: Tiles | None = None, knee: WeightKnee = NO_KNEE) -> ConditionModel:
    """The paper's affine fit of one condition, then the tile-aware one where it lowers cross-validated error.

    The tiles are this condition's own best (no ladder) when no `shared_tiles` are given; with them (see
    detect_shared_tiles), the candidates are no tiles and the shared tiles with their ladder, and where the family
    shows no tile (NO_TILES shared), this condition's own best if it beats those by TILE_MARGIN twice. A family's
    tile outvotes a condition's own: with a dozen samples, one condition's best tile is often chance (on this host,
    normal convs priced 87% instead of 90% of fresh random convs within +-10% when conditions could keep their own).
    The family's `knee` (detect_knee) scales every candidate's FLOPs; the paper's affine fit never has one.
    """
    if any(s.condition != key for s in specs):
        raise ValueError(f"all samples must belong to condition {key}")
    y = positive_latencies(ms, f"condition {key}")
    affine = fit_line(np.array([tiled_mflops(s) for s in specs]), y, relative=False)
    plain = ConditionModel(key, "affine", affine.a, affine.b, 1, 1, affine.n, affine.r2, affine.mape, affine.cv_mape,
                           affine)
    if affine.cv_mape is None:
        return plain
    if shared_tiles is not None and shared_tiles != NO_TILES:  # the family's tile: no own candidates to weigh
        errors = {tiles: cv for tiles in (NO_TILES, shared_tiles)
                  if (cv := _candidate_cv(_costs(specs, tiles, knee), y)) is not None}
        choice = _pick(errors)
    else:
        errors = tile_errors(specs, y, knee=knee)
        choice = _pick(errors)
        if (shared_tiles == NO_TILES and choice is not None and NO_TILES in errors
                and errors[choice] >= errors[NO_TILES] * (1 - TILE_MARGIN) ** 2):
            choice = NO_TILES
    if choice is None or errors[choice] >= affine.cv_mape:
        return plain
    cout_tile, cin_tile, cout_small, cin_small = choice
    tiled = fit_line(_costs(specs, choice, knee), y, relative=True)
    return ConditionModel(key, "tile", tiled.a, tiled.b, cout_tile, cin_tile, tiled.n, tiled.r2, tiled.mape,
                          tiled.cv_mape, affine, *_small_fields(choice), knee=None if knee == NO_KNEE else knee)


def _small_fields(tiles: Tiles) -> tuple[int | None, int | None]:
    """ConditionModel's cout_small_tile and cin_small_tile of these tiles (None where a small tile is the tile)."""
    cout_tile, cin_tile, cout_small, cin_small = tiles
    return None if cout_small == cout_tile else cout_small, None if cin_small == cin_tile else cin_small


def fit_conditions(samples: dict[ConditionKey, tuple[list[ConvSpec], list[float]]]) -> list[ConditionModel]:
    """Fit every condition, with tiles (and their small tile) detected per conv type across all its conditions
    (detect_shared_tiles) and a weight knee per conv type and kernel size (detect_knee)."""
    families: dict[tuple[str, int], list[ConditionKey]] = {}
    for key in samples:
        families.setdefault((key.conv_type, key.groups), []).append(key)
    models = []
    for keys in families.values():
        family = [(samples[k][0], positive_latencies(samples[k][1], f"condition {k}")) for k in keys]
        shared = detect_shared_tiles(family)
        fitted = [fit_condition(k, *samples[k], shared_tiles=shared) for k in keys]
        for kernel in sorted({k.kernel for k in keys}):
            same = [i for i, k in enumerate(keys) if k.kernel == kernel]
            knee = detect_knee([fitted[i] for i in same], [family[i] for i in same])
            if knee != NO_KNEE:
                for i in same:
                    fitted[i] = fit_condition(keys[i], *samples[keys[i]], shared_tiles=shared, knee=knee)
        models += with_extra_term(fitted, family)
    return sorted(models, key=lambda m: str(m.key))


def detect_knee(models: list[ConditionModel], family: list[tuple[list[ConvSpec], np.ndarray]]) -> WeightKnee:
    """The weight knee (KNEE_MB_CANDIDATES x KNEE_STEP_CANDIDATES x KNEE_SLOPE_CANDIDATES) of these conditions
    (one family, one kernel size) with the lowest mean leave-one-out error, each on its own tiles; NO_KNEE unless it
    lowers the mean error of the conditions it touches (those with MIN_PER_SIDE samples on each side of the knee) by
    TERM_MARGIN. Measured over all of them the gain is diluted by the many conditions with small weights."""
    scored = [(m.cv_mape, _costs(specs, m.tiles), np.array([megabytes(conv_weights(s)) for s in specs]), y)
              for m, (specs, y) in zip(models, family) if m.cv_mape is not None]
    best, best_score, best_touched = NO_KNEE, float(np.mean([cv for cv, _, _, _ in scored] or [0.0])), (0.0, 0.0)
    for mb in KNEE_MB_CANDIDATES:
        # a condition with all its samples on one side of the knee cannot show it: a step would only rescale its slope
        sides = [min(int(np.sum(weights > mb)), int(np.sum(weights <= mb))) >= MIN_PER_SIDE
                 for _, _, weights, _ in scored]
        straddling = [row for row, straddles in zip(scored, sides) if straddles]
        if len(straddling) < MIN_KNEE_CONDITIONS:
            continue
        untouched = [row[0] for row, straddles in zip(scored, sides) if not straddles]
        for step, slope in itertools.product(KNEE_STEP_CANDIDATES, KNEE_SLOPE_CANDIDATES):
            if step == slope == 0.0:
                continue
            knee = WeightKnee(mb, slope, step)
            touched = []
            for cv, x, weights, y in straddling:
                loo = loo_predictions(x * knee.factor(weights), y, 1.0 / y**2)
                touched.append((cv, cv if loo is None else mape(loo, y)))
            score = float(np.mean(untouched + [error for _, error in touched]))
            if score < best_score:
                best, best_score = knee, score
                best_touched = tuple(float(np.mean(column)) for column in zip(*touched))
    without, with_knee = best_touched
    return best if with_knee < without * (1 - TERM_MARGIN) else NO_KNEE


# A condition's extra term, beyond `a * MFLOPs + b`: ("align", A) splits the slope into aligned and misaligned
# output-channel counts.
Term = tuple[str, int]
TERMS: tuple[Term, ...] = tuple(("align", a) for a in ALIGN_CANDIDATES)


def _term_design(tiles: Tiles, specs: list[ConvSpec], term: Term, knee: WeightKnee) -> np.ndarray:
    """Columns of the condition's fit with `term`: [aligned MFLOPs, misaligned MFLOPs, 1]."""
    mflops = _costs(specs, tiles, knee)
    misaligned = np.array([s.cout % term[1] != 0 for s in specs], dtype=float)
    return np.column_stack([mflops * (1 - misaligned), mflops * misaligned, np.ones_like(mflops)])


def term_cv(model: ConditionModel, specs: list[ConvSpec], y: np.ndarray, term: Term) -> tuple[float, Tiles] | None:
    """Leave-one-out MAPE of the condition's fit with `term`, on its tiles or on no tiles, whichever is lower (a slow
    path for misaligned counts and a tile are two explanations of the same steps), and those tiles. None when the
    condition cannot show the term: an alignment needs MIN_PER_SIDE aligned and misaligned samples, any term one
    sample more than its three parameters."""
    if len(specs) <= 2 * MIN_PER_SIDE:
        return None
    if term[0] == "align":
        misaligned = sum(s.cout % term[1] != 0 for s in specs)
        if min(misaligned, len(specs) - misaligned) < MIN_PER_SIDE:
            return None
    best = None
    for tiles in dict.fromkeys((model.tiles, NO_TILES)):
        cv = mape(_loo_nonneg_relative(_term_design(tiles, specs, term, model.knee or NO_KNEE), y), y)
        if best is None or cv < best[0]:
            best = (cv, tiles)
    return best


def with_extra_term(models: list[ConditionModel], family: list[tuple[list[ConvSpec], np.ndarray]]
                    ) -> list[ConditionModel]:
    """The family's models, with the one extra term (TERMS) that lowers the mean cross-validated error of its
    conditions most, by at least TERM_MARGIN, given to each condition whose own error it lowers by TILE_MARGIN."""
    scored = [(m, specs, y) for m, (specs, y) in zip(models, family) if m.cv_mape is not None]
    if not scored:
        return models
    baseline = float(np.mean([m.cv_mape for m, _, _ in scored]))
    cvs = {term: [term_cv(m, specs, y, term) for m, specs, y in scored] for term in TERMS}
    # every condition counts with the term where it can have it (not the better of the two: that would favour any
    # term under noise alone)
    score = {term: float(np.mean([cv[0] if cv is not None else m.cv_mape for (m, _, _), cv in zip(scored, cvs[term])]))
             for term in TERMS}
    best = min(score, key=score.get)
    if score[best] >= baseline * (1 - TERM_MARGIN):
        return models
    improved = {id(m): (specs, y, cv) for (m, specs, y), cv in zip(scored, cvs[best])
                if cv is not None and cv[0] < m.cv_mape * (1 - TILE_MARGIN)}
    result = []
    for m in models:
        if id(m) not in improved:
            result.append(m)
            continue
        specs, y, (cv, tiles) = improved[id(m)]
        design = _term_design(tiles, specs, best, m.knee or NO_KNEE)
        coef = _nonneg_relative(design, y)
        pred = design @ coef
        cout_small, cin_small = _small_fields(tiles)
        result.append(replace(m, model="tile" if tiles != NO_TILES else "affine", a_ms_per_mflop=float(coef[0]),
                              b_ms=float(coef[2]), cout_tile=tiles[0], cin_tile=tiles[1], cout_small_tile=cout_small,
                              cin_small_tile=cin_small, r2=r2(pred, y), mape=mape(pred, y), cv_mape=cv,
                              align=best[1], misaligned_a_ms_per_mflop=float(coef[1])))
    return result


@dataclass(frozen=True)
class OpModel:
    """latency_ms = a_ms_per_unit * units + c_ms_per_element * elements + b_ms for one non-conv op (units: see
    profiler.ops.op_units; elements: profiler.ops.op_elements, copy ops only, else c is 0)."""

    op: str
    unit: str
    a_ms_per_unit: float
    b_ms: float
    n: int
    mape: float
    cv_mape: float | None
    c_ms_per_element: float = 0.0

    def predict_ms(self, units: float, elements: float = 0.0) -> float:
        return self.a_ms_per_unit * units + self.c_ms_per_element * elements + self.b_ms

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["op"]
        return d

    @classmethod
    def from_dict(cls, op: str, d: dict) -> OpModel:
        return cls(op=op, **d)


def fit_op(op: str, unit: str, units: list[float], ms: list[float], elements: list[float] | None = None) -> OpModel:
    """Relative (1/y^2-weighted) affine fit of one op's latency on its units, and on its elements too when given
    (copy ops, profiler.ops.op_elements), all coefficients non-negative."""
    y = positive_latencies(ms, f"op {op}")
    if elements is None:
        line = fit_line(np.asarray(units, dtype=float), y, relative=True)
        return OpModel(op, unit, line.a, line.b, line.n, line.mape, line.cv_mape)
    design = np.column_stack([np.asarray(units, dtype=float), np.asarray(elements, dtype=float), np.ones_like(y)])
    a, c, b = _nonneg_relative(design, y)
    pred = design @ np.array([a, c, b])
    cv = mape(_loo_nonneg_relative(design, y), y) if len(y) > design.shape[1] else None
    return OpModel(op, unit, a, b, len(y), mape(pred, y), cv, c)


# Calibration networks (profiler.measure.networks) needed to fit a NetworkModel: two coefficients and a threshold
MIN_NETWORKS = 4
ACTIVATION_THRESHOLDS_MB = (0.25, 0.5, 1.0, 2.0, 4.0)  # cache-sized: the activations of one op that stay cached


@dataclass(frozen=True)
class NetworkSample:
    """One calibration network: its measured latency, the sum of its ops' single-op prices (the invoke overhead
    once), its conv weights in MB and each op's activations (read and written) in MB."""

    measured_ms: float
    ops_ms: float
    weights_mb: float
    activation_mb: tuple[float, ...]


@dataclass(frozen=True)
class NetworkModel:
    """What an op costs inside a network beyond its single-op price: `weights_ms_per_mb` per MB of its weights (read
    cold: the network's other ops have evicted them; alone, they stay cached from one invoke to the next) and
    `activation_ms_per_mb` per MB of the activations it reads and writes beyond `activation_threshold_mb` (those
    leave the faster caches between ops). Fitted on calibration networks; `ops_only_mape` is their error priced by
    their ops alone, `cv_mape` with this model (leave-one-network-out)."""

    weights_ms_per_mb: float
    activation_ms_per_mb: float
    activation_threshold_mb: float
    n: int
    ops_only_mape: float
    mape: float
    cv_mape: float

    def extra_ms(self, weights: Count, activations: Count) -> Count:
        """What an op with these float32 weight and activation counts (values, not MB) costs more inside a network
        (profiler.cost.in_network_ms)."""
        return in_network_ms(self, weights, activations)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkModel:
        return cls(**d)


def _network_design(samples: list[NetworkSample], threshold_mb: float) -> np.ndarray:
    return np.array([[s.weights_mb, sum(max(0.0, a - threshold_mb) for a in s.activation_mb)] for s in samples])


def fit_network(samples: list[NetworkSample]) -> NetworkModel | None:
    """The NetworkModel (threshold from ACTIVATION_THRESHOLDS_MB) with the lowest leave-one-out error; None with
    fewer than MIN_NETWORKS samples or when it does not beat the ops alone by TILE_MARGIN."""
    if len(samples) < MIN_NETWORKS:
        return None
    y = np.array([s.measured_ms for s in samples])
    base = np.array([s.ops_ms for s in samples])
    ops_only = mape(base, y)
    best = None
    for threshold in ACTIVATION_THRESHOLDS_MB:
        design = _network_design(samples, threshold)
        cv = mape(_loo_nonneg_relative(design, y, base), y)
        if best is None or cv < best[0]:
            best = (cv, threshold, design)
    cv, threshold, design = best
    if cv >= ops_only * (1 - TILE_MARGIN):
        return None
    coef = _nonneg_relative(design, y, base)
    return NetworkModel(float(coef[0]), float(coef[1]), threshold, len(y), ops_only, mape(base + design @ coef, y),
                        cv)


def _nonneg_relative(design: np.ndarray, y: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Coefficients >= 0 minimising the squared relative error of base + design @ coef against y (base: 0 unless
    given; scipy's NNLS on the rows divided by y: the same problem as scikit-learn's positive LinearRegression
    weighted by 1/y^2, ~50x faster, which matters in the leave-one-out refits of every condition)."""
    from scipy.optimize import nnls

    return nnls(design / y[:, None], (y - (0.0 if base is None else base)) / y)[0]


def _loo_nonneg_relative(design: np.ndarray, y: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out predictions of _nonneg_relative's fit: each sample from the fit to all the others."""
    keep = ~np.eye(len(y), dtype=bool)
    offset = np.zeros_like(y) if base is None else base
    return np.array([offset[i] + design[i] @ _nonneg_relative(design[keep[i]], y[keep[i]], offset[keep[i]])
                     for i in range(len(y))])
