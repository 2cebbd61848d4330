"""Pair-scanner statistics, vectorised across every ordered pair of a universe.

Why this shape. N symbols make N(N-1) ordered pairs: 39,800 at N = 200, 249,500 at
N = 500. statsmodels' `coint` costs about 2 ms a pair, minutes for a universe. But every
sum the Engle-Granger regressions need is a quadratic form of the price series. With the
spread ``e = y - b x`` and any two lagged or differenced views ``u``, ``v`` of the
series over the same rows,

    sum_t u(e)_t v(e)_t = <u(y), v(y)> - b (<u(y), v(x)> + <u(x), v(y)>) + b^2 <u(x), v(x)>,

so one Gram matrix of the stacked views of all N series (one BLAS ``syrk``,
``B.T @ B``) holds every pair's cross-products, and each pair's regression becomes a few
elementwise operations on N x N arrays. No residual series is built and there is no
per-pair Python loop. Only path statistics (mean crossings) need the spread itself;
`rank_pairs` computes them for the pairs it returns.

Index convention: in every N x N array, entry ``[i, j]`` is the ordered pair with
``y = symbols[i]`` regressed on ``x = symbols[j]``. The diagonal is NaN (1 for the
correlation). NaN means "undefined": a flat (constant) series, a pair that is exactly
collinear, or a degenerate regression. The inputs are log closes on one shared time grid
with no gaps (`quanttui.feed.klines` builds it); nothing here raises for flat data.

statsmodels and scipy are imported inside `mackinnonp`: they cost about a second to
import, and callers run the scan in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_ADF_LAGS = 20
HURST_MAX_LAG = 64
DAY_MS = 86_400_000
SQRTEPS = math.sqrt(np.finfo(float).eps)
NAN = float("nan")


def min_bars(adf_lags: int) -> int:
    """Fewest bars a scan accepts: enough for the ADF regression with `adf_lags` lags
    (statsmodels requires ``L <= T//2 - 1``) and for three Hurst lags (``T/8 >= 4``)."""
    return max(32, 4 * (adf_lags + 1) + 2)


@dataclass(frozen=True, slots=True, eq=False)
class ScanResult:
    """Every ordered pair's statistics; arrays are N x N, ``[i, j]`` = y_i on x_j.

    Attributes
    ----------
    corr : Pearson correlation of one-bar log returns (symmetric).
    beta, alpha : OLS ``log y = alpha + beta log x`` over the window.
    tstat, pvalue : Engle-Granger ADF t-statistic of the residuals with `adf_lags`
        lagged differences, and its MacKinnon p-value (``N = 2``, constant).
    qvalue : Benjamini-Hochberg q-value of `pvalue` across all `tests` defined tests.
    half_life : ``-ln 2 / k`` bars from ``de_t = c + k e_{t-1}``; NaN when ``k >= 0``.
    zscore : the last residual over the residuals' standard deviation (ddof = 1).
    hurst : variance-ratio Hurst exponent of the residuals.
    carry_bps_day : bps of gross notional per day for the side z points to
        (`quanttui.analytics.funding.carry_matrix`); None until funding rates are added
        (`scan_pairs` has no prices to give them), NaN where a rate is missing.
    """

    symbols: tuple[str, ...]
    bars: int
    adf_lags: int
    corr: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray
    tstat: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    half_life: np.ndarray
    zscore: np.ndarray
    hurst: np.ndarray
    tests: int
    flat: tuple[str, ...]
    collinear: int
    logp_centered: np.ndarray  # T x N, for path statistics of chosen pairs
    carry_bps_day: np.ndarray | None = None


def mackinnonp(tstat: np.ndarray | float, regression: str = "c", N: int = 2) -> np.ndarray:
    """MacKinnon (1994) approximate asymptotic p-value of a unit-root / cointegration
    t-statistic, vectorised: the same surface and cut-offs as
    ``statsmodels.tsa.adfvalues.mackinnonp`` (which takes one scalar), applied to an array.

    ``p = Phi(sum_k c_k tau^k)`` with the small-p coefficients for ``tau <= tau*`` and the
    large-p ones above; ``p = 0`` below the table's minimum and ``1`` above its maximum.
    NaN stays NaN; ``-inf`` gives 0.

    H0 (Engle-Granger, N = 2 series, constant): no cointegration. Reference: MacKinnon,
    J.G. (1994) "Approximate Asymptotic Distribution Functions for Unit-Root and
    Cointegration Tests", JBES 12(2), 167-176.
    """
    from scipy.special import ndtr
    from statsmodels.tsa import adfvalues as av

    t = np.asarray(tstat, dtype=float)
    small = np.asarray(av._tau_smallps[regression][N - 1], float)[::-1]
    large = np.asarray(av._tau_largeps[regression][N - 1], float)[::-1]
    star = av._tau_stars[regression][N - 1]
    lo, hi = av._tau_mins[regression][N - 1], av._tau_maxs[regression][N - 1]
    with np.errstate(invalid="ignore"):
        p = np.where(t <= star, ndtr(np.polyval(small, t)), ndtr(np.polyval(large, t)))
        p = np.where(t > hi, 1.0, np.where(t < lo, 0.0, p))
    return p


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (1995) q-values of the finite entries of `p` (any shape); NaN
    entries stay NaN and do not count as tests.

    ``q_(k) = min_{j >= k} min(1, m p_(j) / j)`` for the sorted p-values ``p_(1) <= ... <=
    p_(m)``: rejecting every test with ``q <= alpha`` keeps the expected share of false
    discoveries at most alpha, under independence or positive regression dependence of
    the tests (Benjamini & Yekutieli 2001). The same arithmetic as statsmodels'
    ``multipletests(method='fdr_bh')``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    idx = np.flatnonzero(np.isfinite(flat))
    m = idx.size
    if m == 0:
        return out
    order = np.argsort(flat[idx], kind="mergesort")
    ps = flat[idx][order]
    q = ps / (np.arange(1, m + 1) / m)
    q = np.minimum.accumulate(q[::-1])[::-1]
    q[q > 1] = 1.0
    res = np.empty(m)
    res[order] = q
    out.ravel()[idx] = res
    return out


def _bilinear(g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair ``<u(y) - b u(x), v(y) - b v(x)>`` from the block ``g[a, c] = <u(a), v(c)>``."""
    d = np.diag(g)
    return d[:, None] - b * (g + g.T) + (b * b) * d[None, :]


def _pair_linear(v: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair ``v[y] - b v[x]`` for a per-series vector `v`."""
    return v[:, None] - b * v[None, :]


def scan_pairs(logp: np.ndarray, symbols: Sequence[str], *, adf_lags: int = 1) -> ScanResult:
    """Statistics of every ordered pair of the columns of `logp` (T bars x N symbols of
    log closes on one grid).

    Engle-Granger two-step test, as ``statsmodels.tsa.stattools.coint(y, x, trend='c',
    maxlag=L, autolag=None)``:

    1. OLS with constant over all T bars: ``y_t = alpha + beta x_t + e_t``;
       ``beta = Cxy / Cxx`` from centred cross-products.
    2. ADF regression of the residuals, no constant (they have mean zero), L lags, rows
       ``t = L+1 .. T-1``: ``de_t = gamma e_{t-1} + sum_{k=1..L} phi_k de_{t-k} + u_t``.
       The statistic is the t-value of gamma, ``tau = gamma / se(gamma)``.
       It is read off the Cholesky factor R of the cross-product matrix ordered
       ``[de_{t-1} .. de_{t-L}, e_{t-1}, de_t]``: ``tau = R[e, de_t] sqrt(n - L - 1) /
       R[de_t, de_t]`` (the last regressor's coefficient over its standard error).
    3. p-value from `mackinnonp` with ``N = 2``, constant. H0: no cointegration.

    Where statsmodels flags a pair as (almost) perfectly collinear (``R^2 >= 1 -
    100 sqrt(eps)``) and returns ``tau = -inf, p = 0``, this returns NaN: the spread is
    rounding noise and its z-score and half-life mean nothing.

    Also, from the same sums:

    * correlation of one-bar log returns (Pearson, numpy's ``corrcoef``);
    * half-life: OLS ``de_t = c + k e_{t-1}`` over ``t = 1 .. T-1``, ``-ln 2 / k`` bars,
      NaN when ``k >= 0`` (no mean reversion);
    * z: ``e_{T-1} / sd(e)`` (ddof = 1; e has mean zero) - in-sample, the hedge ratio of
      the whole window;
    * Hurst, variance-ratio form: ``V(tau) = var(e_{t+tau} - e_t)`` (ddof = 0) for
      ``tau = 1, 2, 4, ..`` up to ``min(64, T/8)``; H is half the OLS slope of ``log V``
      on ``log tau`` (``V ~ tau^{2H}``): 0.5 for a random walk, below it for a
      mean-reverting spread (Lo & MacKinlay 1988; Chan, *Algorithmic Trading*, 2013, 2.3);
    * Benjamini-Hochberg q-values of the p-values over all defined ordered pairs.

    References: Engle & Granger (1987), Econometrica 55(2); MacKinnon (1994, 2010).

    Raises `ValueError` for a malformed input (wrong shape, non-finite values, too few
    bars, a lag count out of range), never for flat data.
    """
    X = np.asarray(logp, dtype=float)
    if X.ndim != 2:
        raise ValueError("logp must be a 2-D array: bars x symbols")
    T, N = X.shape
    if len(symbols) != N:
        raise ValueError(f"{len(symbols)} symbols for {N} columns")
    if not 0 <= adf_lags <= MAX_ADF_LAGS:
        raise ValueError(f"adf_lags must be between 0 and {MAX_ADF_LAGS}, got {adf_lags}")
    L = adf_lags
    if T < min_bars(L):
        raise ValueError(f"{T} bars: the scan needs at least {min_bars(L)} with {L} ADF lags")
    if not np.isfinite(X).all():
        raise ValueError("log prices must be finite (no gaps, no zero prices)")

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _scan(X, tuple(symbols), L)


def _scan(X: np.ndarray, symbols: tuple[str, ...], L: int) -> ScanResult:
    T, N = X.shape
    flat = X.max(axis=0) == X.min(axis=0)
    Xc = X - X.mean(axis=0)
    Xc[:, flat] = 0.0
    R = np.diff(X, axis=0)  # R[t-1] = x_t - x_{t-1}

    # correlation of log returns
    Rc = R - R.mean(axis=0)
    gr = Rc.T @ Rc
    sd = np.sqrt(np.diag(gr))
    corr = gr / sd[:, None] / sd[None, :]
    np.clip(corr, -1.0, 1.0, out=corr)
    flat_r = R.max(axis=0) == R.min(axis=0)
    corr[flat_r, :] = np.nan
    corr[:, flat_r] = np.nan

    # one Gram matrix of the views, rows t = L+1 .. T-1:
    # 0: dz_t, 1: z_{t-1} (centred level), 1+k: dz_{t-k} for k = 1..L
    views = [R[L : T - 1], Xc[L : T - 1]] + [R[L - k : T - 1 - k] for k in range(1, L + 1)]
    B = np.concatenate(views, axis=1)
    G = B.T @ B
    P = L + 2

    def block(k: int, m: int) -> np.ndarray:
        return G[k * N : (k + 1) * N, m * N : (m + 1) * N]

    # step 1: hedge ratio from the full-window centred Gram (block 1 plus its edge rows)
    C = block(1, 1).copy()
    edge = Xc[np.r_[0:L, T - 1]]
    C += edge.T @ edge
    cd = np.diag(C).copy()
    beta = C / cd[None, :]
    mean = X.mean(axis=0)
    alpha = mean[:, None] - beta * mean[None, :]
    rss = cd[:, None] - beta * C
    r2 = C * C / (cd[:, None] * cd[None, :])
    collinear = r2 >= 1 - 100 * SQRTEPS

    # step 2: per-pair cross-products of the residual's views
    M = [[None] * P for _ in range(P)]
    for k in range(P):
        for m in range(k, P):
            M[k][m] = M[m][k] = _bilinear(block(k, m), beta)

    # Cholesky of M ordered [dz_{t-1} .. dz_{t-L}, e_{t-1}, dz_t]; tau from its last column
    order = [*range(2, P), 1, 0]
    S = [[M[a][c] for c in order] for a in order]
    U: list[list[np.ndarray | None]] = [[None] * P for _ in range(P)]
    ok = np.ones((N, N), bool)
    for p in range(P):
        s = S[p][p] - sum((U[r][p] ** 2 for r in range(p)), np.zeros((N, N)))
        ok &= s > S[p][p] * 1e-13
        U[p][p] = np.sqrt(np.where(ok, s, np.nan))
        for q in range(p + 1, P):
            acc = S[p][q] - sum((U[r][p] * U[r][q] for r in range(p)), np.zeros((N, N)))
            U[p][q] = acc / U[p][p]
    n_adf = T - 1 - L
    tstat = U[P - 2][P - 1] * math.sqrt(n_adf - (L + 1)) / U[P - 1][P - 1]

    # half-life: de_t = c + k e_{t-1}, t = 1 .. T-1 (block rows t = L+1.. plus edge rows)
    sxx = M[1][1].copy()
    sxd = M[0][1].copy()
    sx = _pair_linear(views[1].sum(axis=0), beta)
    sdd = _pair_linear(views[0].sum(axis=0), beta)
    for t in range(1, L + 1):
        e_prev = _pair_linear(Xc[t - 1], beta)
        de = _pair_linear(R[t - 1], beta)
        sxx += e_prev * e_prev
        sxd += e_prev * de
        sx += e_prev
        sdd += de
    n_ar = T - 1
    k_ar = (n_ar * sxd - sx * sdd) / (n_ar * sxx - sx * sx)
    half_life = np.where(k_ar < 0, -math.log(2) / k_ar, np.nan)

    # z of the last residual
    e_last = _pair_linear(Xc[T - 1], beta)
    zscore = e_last / np.sqrt(rss / (T - 1))

    hurst = _hurst(X, beta)

    bad = flat[:, None] | flat[None, :] | np.eye(N, dtype=bool)
    beta[bad] = np.nan
    alpha[bad] = np.nan
    for a in (tstat, half_life, zscore, hurst):
        a[bad | collinear] = np.nan
    pvalue = mackinnonp(tstat)
    qvalue = bh_qvalues(pvalue)
    return ScanResult(
        symbols=symbols,
        bars=T,
        adf_lags=L,
        corr=corr,
        beta=beta,
        alpha=alpha,
        tstat=tstat,
        pvalue=pvalue,
        qvalue=qvalue,
        half_life=half_life,
        zscore=zscore,
        hurst=hurst,
        tests=int(np.isfinite(pvalue).sum()),
        flat=tuple(s for s, f in zip(symbols, flat, strict=True) if f),
        collinear=int((collinear & ~bad).sum()),
        logp_centered=Xc,
    )


def hurst_lags(bars: int) -> list[int]:
    """Lags of the variance-ratio Hurst fit: powers of two up to ``min(64, bars/8)``."""
    top = min(HURST_MAX_LAG, bars // 8)
    return [1 << k for k in range(7) if (1 << k) <= top]


def _hurst(X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    T = X.shape[0]
    lags = hurst_lags(T)
    if len(lags) < 3:
        return np.full(beta.shape, np.nan)
    lt = np.log(np.asarray(lags, float))
    w = (lt - lt.mean()) / ((lt - lt.mean()) ** 2).sum()
    h = np.zeros(beta.shape)
    for tau, wk in zip(lags, w, strict=True):
        D = X[tau:] - X[:-tau]
        m = T - tau
        Q = D.T @ D
        mean = _pair_linear(D.sum(axis=0), beta) / m
        v = _bilinear(Q, beta) / m - mean * mean
        h += wk * np.log(np.where(v > 0, v, np.nan))
    return h / 2


def crossings_per_day(
    result: ScanResult, yi: np.ndarray, xj: np.ndarray, bar_ms: int, chunk: int = 1024
) -> np.ndarray:
    """Mean crossings per day of the spreads of the pairs ``(yi[k], xj[k])``.

    The spread ``e_t = (y_t - ybar) - beta (x_t - xbar)`` has mean zero over the window; a
    crossing is a bar whose sign (``e > 0``) differs from the previous bar's. Count /
    window length in days, ``(T - 1) bar_ms / 86,400,000``. This needs the path, so it is
    computed only for the pairs asked for (in chunks of `chunk` pairs).
    """
    yi = np.asarray(yi, dtype=np.intp)
    xj = np.asarray(xj, dtype=np.intp)
    Xc = result.logp_centered
    days = (result.bars - 1) * bar_ms / DAY_MS
    out = np.empty(yi.size)
    for a in range(0, yi.size, chunk):
        y, x = yi[a : a + chunk], xj[a : a + chunk]
        b = result.beta[y, x]
        e = Xc[:, y] - b * Xc[:, x]
        pos = e > 0
        out[a : a + chunk] = np.count_nonzero(pos[1:] != pos[:-1], axis=0) / days
        out[a : a + chunk][~np.isfinite(b)] = np.nan
    return out


SORT_KEYS = ("qvalue", "pvalue", "half_life", "abs_z", "corr", "beta", "hurst", "carry_bps_day")


@dataclass(frozen=True, slots=True)
class PairStats:
    """One ranked ordered pair: `y` regressed on `x`. NaN = undefined."""

    y: str
    x: str
    qvalue: float
    pvalue: float
    tstat: float
    beta: float
    alpha: float
    half_life: float
    zscore: float
    corr: float
    hurst: float
    crossings_per_day: float
    carry_bps_day: float = NAN

    @property
    def abs_z(self) -> float:
        return abs(self.zscore)


def _sort_value(result: ScanResult, key: str) -> np.ndarray:
    if key == "abs_z":
        return np.abs(result.zscore)
    if key == "carry_bps_day" and result.carry_bps_day is None:
        return np.full(result.zscore.shape, np.nan)
    return getattr(result, key)


def rank_pairs(
    result: ScanResult,
    *,
    bar_ms: int,
    key: str = "qvalue",
    descending: bool = False,
    limit: int | None = None,
) -> list[PairStats]:
    """The ordered pairs sorted by `key` (one of `SORT_KEYS`; ascending unless
    `descending`), ties broken by p-value, undefined values last; the first `limit` of
    them (all when None), with their mean crossings per day. The default, ascending
    q-value, is the scan's ranking."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}; expected one of {', '.join(SORT_KEYS)}")
    N = len(result.symbols)
    v = _sort_value(result, key).ravel().copy()
    if descending:
        v = -v
    off = ~np.eye(N, dtype=bool).ravel()
    p = result.pvalue.ravel()
    nan_v = ~np.isfinite(v)
    v[nan_v] = 0.0
    pp = np.where(np.isfinite(p), p, np.inf)
    idx = np.flatnonzero(off)
    order = idx[np.lexsort((pp[idx], v[idx], nan_v[idx]))]
    if limit is not None:
        order = order[:limit]
    yi, xj = np.divmod(order, N)
    cross = crossings_per_day(result, yi, xj, bar_ms)
    s = result.symbols
    cols = [
        result.qvalue,
        result.pvalue,
        result.tstat,
        result.beta,
        result.alpha,
        result.half_life,
        result.zscore,
        result.corr,
        result.hurst,
    ]
    vals = [c.ravel()[order].tolist() for c in cols]
    carry = (
        [NAN] * order.size
        if result.carry_bps_day is None
        else result.carry_bps_day.ravel()[order].tolist()
    )
    return [
        PairStats(s[a], s[b], *(col[k] for col in vals), float(cross[k]), carry_bps_day=carry[k])
        for k, (a, b) in enumerate(zip(yi.tolist(), xj.tolist(), strict=True))
    ]


# ---------------------------------------------------------------------------- baskets


@dataclass(frozen=True, slots=True)
class BasketStats:
    """One basket of `scan_baskets`: the Johansen test over the scan's window (log
    closes, in-sample) and its multiple-testing-adjusted p-value. NaN = undefined."""

    symbols: tuple[str, ...]
    trace_stat: float
    trace_cv95: float
    margin: float
    max_eig_stat: float
    rank: int
    pvalue: float
    p_holm: float
    weights: tuple[float, ...]
    half_life: float
    zscore: float


@dataclass(frozen=True, slots=True)
class BasketScan:
    """`scan_baskets`' ranking and what the correction was taken over."""

    size: int
    pairs: int
    """Undirected pairs (edges) the candidates were built from."""
    tests: int
    """Baskets tested: the Holm correction's family."""
    draws: int
    baskets: tuple[BasketStats, ...]


def basket_candidates(
    pvalue: np.ndarray, size: int, pairs: int
) -> tuple[list[tuple[int, ...]], int]:
    """Candidate baskets from the pair scan: the `pairs` undirected pairs with the smallest
    Engle-Granger p-value (the smaller of the two orders) are the edges of a graph, and
    every set of `size` symbols whose edges connect it is a candidate (for 3: two or three
    of its pairs among the edges). Returns (sorted index tuples, edges used)."""
    if size < 3:
        raise ValueError(f"a basket has 3 or more legs, got {size}")
    n = pvalue.shape[0]
    und = np.fmin(pvalue, pvalue.T)
    iu, ju = np.triu_indices(n, 1)
    p = und[iu, ju]
    ok = np.isfinite(p)
    order = np.argsort(np.where(ok, p, np.inf), kind="stable")[: max(int(ok.sum()), 0)]
    order = order[:pairs]
    adj: dict[int, set[int]] = {}
    for k in order.tolist():
        a, b = int(iu[k]), int(ju[k])
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    sets = {frozenset((int(iu[k]), int(ju[k]))) for k in order.tolist()}
    for _ in range(size - 2):
        grown = set()
        for s in sets:
            for v in s:
                for w in adj.get(v, ()):
                    if w not in s:
                        grown.add(s | {w})
        sets = grown
    return sorted(tuple(sorted(s)) for s in sets), int(order.size)


_NULL_CACHE: dict[tuple[int, int, int, int, int], tuple[float, float]] = {}


def null_trace_moments(
    bars: int, legs: int, det_order: int, k_ar_diff: int, draws: int = 500
) -> tuple[float, float]:
    """Mean and variance of the Johansen trace statistic (r = 0) under H0 (no
    cointegration) for this sample size, by simulation: `draws` baskets of independent
    Gaussian random walks (seeded, so the same inputs give the same numbers). The
    statistic does not depend on the legs' scales, so these serve every basket of the
    same shape."""
    from quanttui.analytics.johansen import johansen

    key = (bars, legs, det_order, k_ar_diff, draws)
    if key not in _NULL_CACHE:
        rng = np.random.default_rng(20_240_201 + 97 * legs + bars)
        stats = np.empty(draws)
        for b in range(draws):
            y = np.cumsum(rng.normal(size=(bars, legs)), axis=0)
            stats[b] = johansen(y, det_order, k_ar_diff).trace[0]
        _NULL_CACHE[key] = (float(stats.mean()), float(stats.var(ddof=1)))
    return _NULL_CACHE[key]


def trace_pvalue(stat: np.ndarray | float, mean: float, var: float) -> np.ndarray:
    """Upper-tail p-value of a trace statistic from a Gamma distribution with the null's
    `mean` and `var` (shape ``mean^2 / var``, scale ``var / mean``): Doornik's (1998)
    Gamma approximation of the trace test's distribution, with the two moments simulated
    at the sample's own length (`null_trace_moments`) rather than taken from asymptotic
    response surfaces, which the trace test exceeds in finite samples.

    References
    ----------
    Doornik, J. A. (1998), "Approximations to the asymptotic distributions of
    cointegration tests", Journal of Economic Surveys 12(5), 573-593.
    """
    from scipy.stats import gamma

    return gamma.sf(np.asarray(stat, float), mean * mean / var, scale=var / mean)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, ``p~_(k) = max_{j<=k} min(1, (m - j + 1)
    p_(j))`` over the m defined p-values: rejecting where ``p~ < alpha`` keeps the
    family-wise error rate (any false rejection among the m tests) at most alpha under
    any dependence between the tests. NaN stays NaN and is not counted in m."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def scan_baskets(
    logp: np.ndarray,
    symbols: Sequence[str],
    pvalue: np.ndarray,
    *,
    size: int = 3,
    pairs: int = 30,
    det_order: int = 0,
    k_ar_diff: int = 1,
    draws: int = 500,
) -> BasketScan:
    """Baskets of `size` legs built from the pair scan's most cointegrated pairs
    (`basket_candidates`), each tested with Johansen over the whole window of log closes
    `logp` (bars x symbols), ranked by Holm-adjusted p-value of the trace test (r = 0),
    ties by the margin of the trace statistic over its 95 % critical value.

    Per basket: ``weights`` (first eigenvector, leg 0 = 1), the in-sample spread
    ``s = logp @ w``, its z (last value less the mean, over the standard deviation, ddof
    1) and half-life (OLS ``ds_t = c + k s_{t-1}``, ``-ln 2 / k`` bars if k < 0)."""
    from quanttui.analytics.johansen import johansen

    combos, used = basket_candidates(pvalue, size, pairs)
    if not combos:
        return BasketScan(size, used, 0, draws, ())
    bars = logp.shape[0]
    mean, var = null_trace_moments(bars, size, det_order, k_ar_diff, draws)
    rows = []
    for c in combos:
        lv = logp[:, list(c)]
        try:
            res = johansen(lv, det_order, k_ar_diff)
        except (ValueError, np.linalg.LinAlgError):
            continue
        w = res.weights
        s = lv @ w
        ds, lag = np.diff(s), s[:-1]
        lc = lag - lag.mean()
        k = float(lc @ (ds - ds.mean()) / (lc @ lc)) if lc @ lc > 0 else NAN
        sd = float(s.std(ddof=1))
        rows.append(
            (
                c,
                float(res.trace[0]),
                float(res.trace_cv[0, 1]),
                float(res.max_eig[0]),
                int(res.rank),
                tuple(w.tolist()),
                -math.log(2) / k if k < 0 else NAN,
                float((s[-1] - s.mean()) / sd) if sd > 0 else NAN,
            )
        )
    p = trace_pvalue(np.array([r[1] for r in rows]), mean, var) if rows else np.empty(0)
    adj = holm(p)
    stats = [
        BasketStats(
            tuple(symbols[i] for i in r[0]),
            r[1],
            r[2],
            r[1] - r[2],
            r[3],
            r[4],
            float(p[n]),
            float(adj[n]),
            r[5],
            r[6],
            r[7],
        )
        for n, r in enumerate(rows)
    ]
    stats.sort(key=lambda b: (b.p_holm, -b.margin))
    return BasketScan(size, used, len(stats), draws, tuple(stats))
