"""``arbkit match``: both venues' listings → proposals → a review → a verified symbol map.

Three ways through, all ending in the same symbol-map writer:

* ``arbkit match`` pulls (or, ``--offline``, re-reads) the catalogue, writes the review
  file and says how many proposals wait for a decision;
* ``arbkit match --apply REVIEW --out symbols.toml --verified-by NAME`` writes the pairs
  confirmed in the review file;
* ``arbkit match --interactive --out … --verified-by …`` asks at the terminal instead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from arbkit.config._toml import read_toml
from arbkit.config.loader import symbol_map_toml
from arbkit.matching.matcher import Candidate, MatchResult, match
from arbkit.matching.review import (
    Decision,
    ReviewError,
    at_strike_lines,
    confirmed_symbol_map,
    diff_text,
    read_review,
    review_toml,
    symbol_name,
)

DEFAULT_CATALOGUE = Path("data/catalogue.json")
DEFAULT_REVIEW = Path("data/match-review.toml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalogue", default=str(DEFAULT_CATALOGUE), help="listing cache (JSON)")
    p.add_argument("--offline", action="store_true", help="use the catalogue; ask no venue")
    p.add_argument(
        "--max-age-s",
        type=int,
        default=86_400,
        help="re-read a ForecastEx underlier older than this (default one day)",
    )
    p.add_argument("--series", action="append", default=[], help="Kalshi series (repeat)")
    p.add_argument(
        "--search",
        action="append",
        default=[],
        help="reqMatchingSymbols pattern (repeat; default A..Z)",
    )
    p.add_argument("--threshold", type=int, default=None, help="topic score to propose (70)")
    p.add_argument("--review", default=str(DEFAULT_REVIEW), help="review file to write")
    p.add_argument("--apply", default=None, metavar="REVIEW", help="write the confirmed pairs")
    p.add_argument("--interactive", action="store_true", help="confirm at the terminal")
    p.add_argument("--out", default=None, help="symbol map TOML to write")
    p.add_argument("--verified-by", default="", help="who checked the pairs (recorded)")
    p.add_argument("--kalshi-env", choices=["prod", "demo", "custom"], default="demo")
    p.add_argument("--kalshi-rest", default=None, help="REST base URL for --kalshi-env custom")
    p.add_argument("--ibkr-host", default="127.0.0.1")
    p.add_argument("--ibkr-port", type=int, default=7497)
    p.add_argument("--ibkr-client-id", type=int, default=7)


class MatchError(Exception):
    """A user mistake: one line, exit 2."""


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _write_map(decisions: Sequence[Decision], out: str | None, verified_by: str) -> str:
    if not out:
        raise MatchError("--out FILE is required to write a symbol map")
    try:
        smap = confirmed_symbol_map(decisions, verified_by=verified_by, verified_on=_today())
    except ReviewError as exc:
        raise MatchError(str(exc)) from None
    if not smap.symbols:
        raise MatchError("no pair is confirmed: nothing to write")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(
        symbol_map_toml(smap, ("Written by arbkit match from confirmed pairs.",)),
        encoding="utf-8",
    )
    return f"{out}: {len(smap.symbols)} pairs confirmed by {verified_by}"


async def _pull(args: argparse.Namespace, rest_url: str, auth: object) -> str:
    from arbkit.gateways.discovery import pull
    from arbkit.gateways.kalshi_auth import KalshiAuth

    assert isinstance(auth, KalshiAuth)
    _, summary = await pull(
        args.catalogue,
        rest_url,
        auth,
        ibkr_host=args.ibkr_host,
        ibkr_port=args.ibkr_port,
        client_id=args.ibkr_client_id,
        series=args.series,
        patterns=args.search,
        max_age_s=args.max_age_s,
    )
    return summary


def run(
    args: argparse.Namespace,
    *,
    kalshi_target: Callable[[], tuple[str, object]],
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
) -> int:
    from arbkit.gateways.discovery import Catalogue

    if args.apply:
        try:
            decisions = read_review(read_toml(args.apply), args.apply)
        except ReviewError as exc:
            raise MatchError(str(exc)) from None
        say(_write_map(decisions, args.out, args.verified_by))
        return 0
    if not args.offline:
        rest_url, auth = kalshi_target()
        say(asyncio.run(_pull(args, rest_url, auth)))
    try:
        cat = Catalogue.load(args.catalogue)
    except ValueError as exc:
        raise MatchError(str(exc)) from None
    if not cat.kalshi or not cat.forecastex:
        raise MatchError(
            f"{args.catalogue}: {len(cat.kalshi)} Kalshi markets, {len(cat.forecastex)} "
            "ForecastEx pairs: nothing to match (run without --offline first)"
        )
    kw = {} if args.threshold is None else {"threshold": args.threshold}
    result = match(list(cat.kalshi.values()), list(cat.forecastex.values()), **kw)
    _summary(result, say)
    if args.interactive:
        return _interactive(result.proposals, args, ask, say)
    Path(args.review).parent.mkdir(parents=True, exist_ok=True)
    Path(args.review).write_text(
        review_toml(result.proposals, generated_on=_today()), encoding="utf-8"
    )
    say(
        f"review file: {args.review} ({len(result.proposals)} pairs to confirm). Set "
        f'decision = "confirm" or "reject", then: arbkit match --apply {args.review} '
        "--out symbols.toml --verified-by NAME"
    )
    return 0


def _summary(result: MatchResult, say: Callable[[str], None]) -> None:
    rel: dict[str, int] = {}
    for c in result.proposals:
        rel[c.relation] = rel.get(c.relation, 0) + 1
    say(
        f"{len(result.proposals)} proposals ("
        + ", ".join(f"{n} {r}" for r, n in sorted(rel.items()))
        + f"); {len(result.others)} related candidates not proposed; "
        f"{len(result.unmatched)} Kalshi markets without a proposal"
    )


def describe(c: Candidate) -> list[str]:
    k, f = c.kalshi, c.forecastex
    lines = [
        f"{k.ticker}  ↔  {f.symbol} {f.last_trade_date} {f.strike} "
        f"(YES {f.yes_con_id} / NO {f.no_con_id})",
        f"  relation {c.relation}, kalshi_yes_is = {c.kalshi_yes_is!r}, score {c.topic_score}",
        f"  Kalshi YES: {c.kalshi_set}   ForecastEx YES: {c.forecastex_set}",
        *(f"  {line}" for line in at_strike_lines(c)),
        f"  sources: Kalshi {c.kalshi_source!r}, ForecastEx {c.forecastex_source!r}",
        f"  Kalshi rules: {k.rules_primary}",
        f"  ForecastEx:   {f.description}",
        f"  diff: {diff_text(k.rules_primary or k.title, f.description)}",
    ]
    lines += [f"  warning: {w}" for w in c.warnings]
    return lines


def _interactive(
    proposals: Sequence[Candidate],
    args: argparse.Namespace,
    ask: Callable[[str], str],
    say: Callable[[str], None],
) -> int:
    import tomllib

    decisions = []
    data = tomllib.loads(review_toml(proposals))
    for c, pair in zip(proposals, data.get("pair", []), strict=True):
        for line in describe(c):
            say(line)
        answer = ""
        while answer not in ("y", "n", "q"):
            answer = ask(f"confirm {symbol_name(c.kalshi.ticker)}? [y/n/q] ").strip().lower()[:1]
        if answer == "q":
            break
        decisions.append(Decision(pair, "confirm" if answer == "y" else "reject"))
    say(_write_map(decisions, args.out, args.verified_by))
    return 0
