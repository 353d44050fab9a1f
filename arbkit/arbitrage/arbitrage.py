"""ArbitrageDetector: fee-aware, depth-aware sizing of cross-venue binary arbitrage.

For each symbol two combinations exist (after orientation): Kalshi YES + the ForecastEx
outcome that pays when Kalshi YES does not, and Kalshi NO + the one that pays when Kalshi
NO does not. Buying ``n`` whole contracts of both legs pays exactly ``n × $1``.

Profit at size n (all exact integers, fees on the whole order, rounded up):

    g(n) = n·$1 − costK(n) − costF(n) − feeK(n) − feeF(n)

We want the n maximising g subject to: n ≤ max contracts, visible depth, gross cost ≤ max
notional, g(n) > n · min edge, g(n) > 0, annualised return ≥ the minimum; ties go to the
smaller n (same profit, less capital).

Speed without approximation. Let E(n) be g(n) with the Kalshi fee *unrounded*. As long as
the fee coefficient k < 1, E is concave in n (marginal prices only rise as the ladders are
walked and the marginal fee k·P(1−P) rises slower than P), and g(n) ≤ E(n). So:

* the top of book alone bounds the best average edge: if E(1) < min edge, nothing exists;
* past the first contract whose marginal gross edge is ≤ 0, g only falls (rounded fees are
  non-decreasing in n), so the walk stops there;
* the E-peak and the min-edge limit are found by binary search, and only the few sizes
  around them with E(n) ≥ the best g found so far are evaluated exactly.

``tests/test_arbitrage.py`` checks this against a brute-force oracle over every size.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

from arbkit.arbitrage.fee_model import FeeModel, KalshiFeeSchedule
from arbkit.book.freshness import quote_fresh, quote_seen_ns
from arbkit.book.order_book import AskLadder, Combo, SymbolBook
from arbkit.config.execution_loader import DetectorParams
from arbkit.model import (
    MONEY_SCALE,
    PRICE_SCALE,
    QTY_SCALE,
    Leg,
    Money,
    Opportunity,
    Price,
    Qty,
    Venue,
)

YEAR_NS = 365 * 24 * 3600 * 1_000_000_000
_TERM = PRICE_SCALE  # fee_term = qty·p·(10⁴ − p)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


class _Walk:
    """Cumulative arrays over the levels one leg may consume (bisect lookups by qty)."""

    __slots__ = ("ceil", "cost", "ends", "prices", "sched", "term")

    def __init__(self, levels: list[tuple[int, int]], sched: KalshiFeeSchedule | None) -> None:
        self.prices = [p for p, _ in levels]
        self.sched = sched
        ends: list[int] = []
        cost: list[int] = [0]
        term: list[int] = [0]
        ceil: list[int] = [0]
        q = c = t = r = 0
        for p, s in levels:
            q += s
            c += p * s
            ends.append(q)
            cost.append(c)
            if sched is not None:
                lt = s * p * (_TERM - p)
                t += lt
                if sched.per_fill:
                    r += sched.round_up(lt)
            term.append(t)
            ceil.append(r)
        self.ends, self.cost, self.term, self.ceil = ends, cost, term, ceil

    @property
    def total(self) -> int:
        return self.ends[-1] if self.ends else 0

    def at(self, q: int) -> tuple[int, int, int, int]:
        """(cost, exact fee term, rounded fee if per-fill else 0, worst price) for qty q."""
        i = bisect_left(self.ends, q)
        p = self.prices[i]
        r = q - (self.ends[i - 1] if i else 0)
        cost = self.cost[i] + r * p
        if self.sched is None:
            return cost, 0, 0, p
        lt = r * p * (_TERM - p)
        rounded = self.ceil[i] + self.sched.round_up(lt) if self.sched.per_fill else 0
        return cost, self.term[i] + lt, rounded, p

    def cost_at(self, q: int) -> int:
        i = bisect_left(self.ends, q)
        return self.cost[i] + (q - (self.ends[i - 1] if i else 0)) * self.prices[i]


def _take_levels(
    ladder: AskLadder,
    max_price_excl: int,
    cap_qty: int,
    fraction: tuple[int, int] = (1, 1),
) -> list[tuple[int, int]]:
    """Levels a profitable order could reach: all below ``max_price_excl``, then enough
    beyond it to complete the first whole contract priced entirely at/above it (its
    marginal gross edge is ≤ 0, which ends the search), capped at ``cap_qty``. Each
    level counts at ``fraction`` (num, den) of its displayed size (``book_depth_fraction``:
    other takers see the same depth), floored to the quantity unit."""
    f_num, f_den = fraction
    out: list[tuple[int, int]] = []
    q = 0
    stop_at = cap_qty
    sizes = ladder.sizes
    for p in ladder.prices:
        if p >= max_price_excl and stop_at == cap_qty:
            stop_at = min(cap_qty, (q // QTY_SCALE + 2) * QTY_SCALE)
        if q >= stop_at:
            break
        s = sizes[p]
        if f_num != f_den:
            s = s * f_num // f_den
            if s <= 0:
                continue
        out.append((p, s))
        q += s
    return out


def combos_for(book: SymbolBook) -> tuple[Combo, Combo]:
    return book.combos


class ArbitrageDetector:
    """Pure and synchronous: book state + time in, sized Opportunities out."""

    def __init__(self, fee_model: FeeModel, params: DetectorParams) -> None:
        self.fee_model = fee_model
        self.params = params
        self.evaluations = 0

    def evaluate(
        self,
        book: SymbolBook,
        now_ns: int,
        venue_alive_ns: Mapping[Venue, int] | None = None,
    ) -> list[Opportunity]:
        """Every combination with an opportunity, best expected profit first."""
        self.evaluations += 1
        out: list[Opportunity] = []
        for combo in book.combos:
            opp = self.evaluate_combo(book, combo, now_ns, venue_alive_ns)
            if opp is not None:
                out.append(opp)
        if len(out) > 1:
            out.sort(key=lambda o: -o.expected_profit)
        return out

    def evaluate_combo(
        self,
        book: SymbolBook,
        combo: Combo,
        now_ns: int,
        venue_alive_ns: Mapping[Venue, int] | None = None,
    ) -> Opportunity | None:
        kl = book.ladder(Venue.KALSHI, combo.kalshi_outcome)
        fl = book.ladder(Venue.IBKR, combo.ibkr_outcome)
        if not (
            quote_fresh(kl, Venue.KALSHI, now_ns, venue_alive_ns, self.params)
            and quote_fresh(fl, Venue.IBKR, now_ns, venue_alive_ns, self.params)
        ):
            return None
        bk, bf = kl.prices[0], fl.prices[0]
        if bk + bf >= PRICE_SCALE:
            return None
        ttr_ns = book.spec.resolution_ts_ns - now_ns
        if ttr_ns <= 0:
            return None
        params = self.params
        sched = self.fee_model.kalshi_schedule(
            book.spec.kalshi_series, ticker=book.spec.kalshi_ticker
        )
        fx_fee = self.fee_model.forecastex_fee_per_contract
        # The slippage buffer is a cost per contract on each leg: sized and reported
        # after it (expected_profit is what is left once both buffers are paid).
        buffers = 2 * params.slippage_buffer_usd_per_leg
        per_contract = fx_fee + buffers
        min_edge = params.min_edge_usd
        num, den = sched.num, sched.den
        # Top-of-book bound on the best average edge (exact, fees unrounded = lower bound).
        e1 = (MONEY_SCALE - QTY_SCALE * (bk + bf) - per_contract) * den - num * QTY_SCALE * bk * (
            _TERM - bk
        )
        if e1 < min_edge * den or e1 <= 0:
            return None
        cap_qty = params.max_contracts_per_trade * QTY_SCALE
        frac = params.depth_fraction
        kw = _Walk(_take_levels(kl, PRICE_SCALE - bf, cap_qty, frac), sched)
        fw = _Walk(_take_levels(fl, PRICE_SCALE - bk, cap_qty, frac), None)
        q_cap = min(cap_qty, kw.total, fw.total) // QTY_SCALE * QTY_SCALE
        if q_cap < QTY_SCALE:
            return None
        # One pass over merged segments (both legs' prices constant) finds, in qty units:
        # where the marginal gross edge ends, where marginal E ends (E's peak), where the
        # average-edge constraint H(q) = 100·E(q) − q·min_edge (scaled) turns negative,
        # and where gross cost passes the notional cap.
        max_notional = params.max_notional_usd_per_trade
        e_den = min_edge * den
        q_gross = q_peak = q_edge = q_notional = -1
        q = cost = h = 0
        ik = jf = 0
        k_ends, k_prices, f_ends, f_prices = kw.ends, kw.prices, fw.ends, fw.prices
        while q < q_cap:
            pk, pf = k_prices[ik], f_prices[jf]
            seg_end = min(k_ends[ik], f_ends[jf], q_cap)
            seg = seg_end - q
            if q_gross < 0 and pk + pf >= PRICE_SCALE:
                q_gross = q
            s_e = (
                MONEY_SCALE - QTY_SCALE * (pk + pf) - per_contract
            ) * den - QTY_SCALE * num * pk * (_TERM - pk)
            if q_peak < 0 and s_e <= 0:
                q_peak = q
            slope_h = s_e - e_den
            if q_edge < 0 and h + slope_h * seg < 0:
                q_edge = q + h // -slope_h
            if q_notional < 0 and cost + (pk + pf) * seg > max_notional:
                q_notional = q + (max_notional - cost) // (pk + pf)
            h += slope_h * seg
            cost += (pk + pf) * seg
            q = seg_end
            if q == k_ends[ik]:
                ik += 1
            if q == f_ends[jf]:
                jf += 1
            if q_gross >= 0 and q >= q_gross + QTY_SCALE:  # q_peak ≤ q_gross; H ≥ 0 so far
                break
        q_gross = q_cap if q_gross < 0 else q_gross
        q_peak = q_cap if q_peak < 0 else q_peak
        q_edge = q_cap if q_edge < 0 else q_edge
        q_notional = q_cap if q_notional < 0 else q_notional

        def gross_cost(n: int) -> int:
            qq = n * QTY_SCALE
            return kw.cost_at(qq) + fw.cost_at(qq)

        # Contracts wholly before q_gross have positive marginal gross edge; the one
        # straddling it is checked exactly; every later one is ≤ 0 (g only falls there).
        n_hi = q_gross // QTY_SCALE
        if q_gross % QTY_SCALE and q_gross < q_cap:
            n0 = n_hi + 1
            if gross_cost(n0) - (gross_cost(n0 - 1) if n0 > 1 else 0) < MONEY_SCALE:
                n_hi = n0
        n_hi = min(n_hi, q_cap // QTY_SCALE, q_notional // QTY_SCALE)
        if n_hi < 1:
            return None

        def e_scaled(n: int) -> int:
            q = n * QTY_SCALE
            ck, tk, _, _ = kw.at(q)
            return (n * (MONEY_SCALE - per_contract) - ck - fw.cost_at(q)) * den - num * tk

        def g(n: int) -> tuple[int, int, int, int, int, int, int]:
            q = n * QTY_SCALE
            ck, tk, rk, pk = kw.at(q)
            fee_k = rk if sched.per_fill else sched.order_fee(tk, ck)
            cf, _, _, pf = fw.at(q)
            fee_f = n * fx_fee
            gv = n * (MONEY_SCALE - buffers) - ck - cf - fee_k - fee_f
            return gv, ck, cf, fee_k, fee_f, pk, pf

        coupon_bps = self.fee_model.coupon_bps_at(now_ns)
        min_ann = params.min_annualized_return_bps

        def ann_bps(profit: int, capital: int, cap_f: int) -> int:
            return (profit * 10_000 * YEAR_NS + cap_f * coupon_bps * ttr_ns) // (capital * ttr_ns)

        best_n = 0
        best_g = 0
        best_row: tuple[int, int, int, int, int, int, int] | None = None

        def consider(n: int) -> None:
            nonlocal best_n, best_g, best_row
            row = g(n)
            gv = row[0]
            if gv <= 0 or gv <= n * min_edge:  # strictly: cost + fees < n·($1 − edge)
                return
            if min_ann and ann_bps(gv, row[1] + row[2] + row[3] + row[4], row[2]) < min_ann:
                return
            if best_row is None or gv > best_g or (gv == best_g and n < best_n):
                best_n, best_g, best_row = n, gv, row

        if sched.num * PRICE_SCALE >= sched.den:  # k ≥ 1: E not concave; exhaustive
            for n in range(1, n_hi + 1):
                consider(n)
        else:
            e_peak = q_peak // QTY_SCALE
            if q_peak % QTY_SCALE and q_peak < q_cap:
                n0 = e_peak + 1
                if e_scaled(n0) - (e_scaled(n0 - 1) if n0 > 1 else 0) > 0:
                    e_peak = n0
            e_peak = max(1, min(e_peak, n_hi))
            n_edge = min(q_edge // QTY_SCALE, n_hi)
            n_start = min(e_peak, n_edge)
            # Downward: E increases with n here, so stop once E(n) < best g.
            n = n_start
            while n >= 1:
                if best_row is not None and e_scaled(n) < best_g * den:
                    break
                consider(n)
                n -= 1
            # Upward (only past the E-peak, within the min-edge limit): E decreases.
            n = n_start + 1
            while n <= n_edge:
                if best_row is not None and e_scaled(n) <= best_g * den:
                    break
                consider(n)
                n += 1
        if best_row is None:
            return None
        gv, ck, cf, fee_k, fee_f, pk, pf = best_row
        n = best_n
        size = Qty(n * QTY_SCALE)
        capital = ck + cf + fee_k + fee_f
        return Opportunity(
            symbol=book.symbol,
            combo=combo.label,
            kalshi=Leg(
                Venue.KALSHI, combo.kalshi_outcome, Price(pk), size, Money(ck), Money(fee_k)
            ),
            ibkr=Leg(Venue.IBKR, combo.ibkr_outcome, Price(pf), size, Money(cf), Money(fee_f)),
            size=size,
            gross_cost=Money(ck + cf),
            total_fees=Money(fee_k + fee_f),
            expected_profit=Money(gv),
            net_edge_per_contract=Money(gv // n),
            annualized_return_bps=ann_bps(gv, capital, cf),
            kalshi_book_ts_ns=kl.updated_ns,
            ibkr_book_ts_ns=fl.updated_ns,
            detected_ts_ns=now_ns,
            quote_seen_ns=min(
                quote_seen_ns(kl, Venue.KALSHI, venue_alive_ns),
                quote_seen_ns(fl, Venue.IBKR, venue_alive_ns),
            ),
            coupon_bps=coupon_bps,
        )
