"""Synthetic SSDA903 CSV tables for load tests and benchmarks (no real child is in them).

Children are generated one by one until the Episodes plus Missing rows reach the requested
count. Each child's episodes form periods of care (first RNE S, then P/L/T/B/U moves joined by
X1, the last open or ended with an E code); missing and away episodes fall inside care. Code
frequencies roughly follow published national shares (mostly C2 legal status, N1 need, foster
placements). Output is deterministic for a given seed.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

HEADER_COLUMNS = ("CHILD", "SEX", "DOB", "ETHNIC", "UPN", "MOTHER", "MC_DOB")
EPISODE_COLUMNS = (
    "CHILD",
    "DECOM",
    "RNE",
    "LS",
    "CIN",
    "PLACE",
    "PLACE_PROVIDER",
    "DEC",
    "REC",
    "REASON_PLACE_CHANGE",
    "HOME_POST",
    "PL_POST",
    "URN",
)
MISSING_COLUMNS = ("CHILD", "DOB", "MISSING", "MIS_START", "MIS_END")
UASC_COLUMNS = ("CHILD", "SEX", "DOB", "DUC")

_LS = {"C2": 70, "V2": 8, "C1": 10, "E1": 5, "J2": 2, "L2": 2, "V4": 2, "D1": 1}
_CIN = {"N1": 64, "N4": 15, "N5": 8, "N6": 4, "N8": 5, "N2": 2, "N3": 1, "N7": 1}
_PLACE = {
    "U1": 10,
    "U3": 35,
    "U4": 8,
    "U5": 8,
    "U6": 9,
    "R1": 6,
    "K2": 12,
    "P2": 4,
    "H5": 3,
    "A5": 2,
    "S1": 1,
    "Z1": 2,
}
_PROVIDER = {"PR1": 55, "PR4": 35, "PR2": 4, "PR5": 3, "PR3": 3}
_RNE_NEXT = {"P": 60, "L": 25, "T": 10, "B": 4, "U": 1}
_REASON = {
    "CARPL": 30,
    "CHILD": 15,
    "PLACE": 15,
    "ALLEG": 3,
    "STAND": 5,
    "APPRR": 5,
    "CREQB": 4,
    "CREQO": 4,
    "LAREQ": 10,
    "CLOSE": 4,
    "CUSTOD": 1,
    "OTHER": 4,
}
_REC_END = {
    "E11": 4,
    "E12": 4,
    "E13": 5,
    "E41": 6,
    "E45": 2,
    "E46": 2,
    "E47": 2,
    "E48": 2,
    "E4A": 28,
    "E4B": 4,
    "E5": 2,
    "E6": 3,
    "E7": 4,
    "E8": 12,
    "E9": 2,
    "E14": 3,
    "E15": 3,
    "E16": 2,
    "E17": 2,
    "E2": 1,
    "E3": 6,
}
_ETHNIC = {
    "WBRI": 66,
    "WOTH": 5,
    "MWBC": 4,
    "MOTH": 4,
    "BAFR": 4,
    "BOTH": 2,
    "AOTH": 2,
    "OOTH": 4,
    "MWAS": 2,
    "MWBA": 2,
    "APKN": 1,
    "ABAN": 1,
    "BCRB": 1,
    "WROM": 1,
    "NOBT": 1,
}
_OUTWARD = (
    "B12",
    "BS5",
    "CM20",
    "DN31",
    "E17",
    "G31",
    "HU9",
    "L4",
    "LS9",
    "M40",
    "ME7",
    "N17",
    "NE4",
    "NG7",
    "PE1",
    "PL2",
    "S2",
    "SE15",
    "SO14",
    "ST4",
    "SW9",
    "TS3",
    "W12",
    "WV10",
)
_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


class _RowWriter(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


@dataclass(frozen=True, slots=True)
class SyntheticCounts:
    """Rows written per table."""

    header: int
    episodes: int
    missing: int
    uasc: int


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _fmt(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _postcode(rng: random.Random) -> str:
    return f"{rng.choice(_OUTWARD)} {rng.randrange(10)}{rng.choice(_LETTERS)}{rng.choice(_LETTERS)}"


def generate(
    out: Path,
    rows: int = 200_000,
    *,
    seed: int = 903,
    missing_share: float = 0.15,
    sex_coding: str = "numeric",
) -> SyntheticCounts:
    """Write Header.csv, Episodes.csv, Missing.csv and UASC.csv under `out`.

    `rows` counts Episodes plus Missing rows; `missing_share` is the share of them that are
    Missing rows; `sex_coding` is `numeric` (1/2, until 2023-24) or `letters` (M/F/U).
    """
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"header": 0, "episodes": 0, "missing": 0, "uasc": 0}
    target_missing = int(rows * missing_share)
    target_episodes = rows - target_missing
    # About 1.7 episodes per child and 2 missing rows per child who goes missing.
    missing_chance = min(1.0, 0.85 * missing_share / max(1e-9, 1.0 - missing_share))
    with (
        (out / "Header.csv").open("w", newline="", encoding="utf-8") as header_file,
        (out / "Episodes.csv").open("w", newline="", encoding="utf-8") as episodes_file,
        (out / "Missing.csv").open("w", newline="", encoding="utf-8") as missing_file,
        (out / "UASC.csv").open("w", newline="", encoding="utf-8") as uasc_file,
    ):
        header_w, episodes_w = csv.writer(header_file), csv.writer(episodes_file)
        missing_w, uasc_w = csv.writer(missing_file), csv.writer(uasc_file)
        header_w.writerow(HEADER_COLUMNS)
        episodes_w.writerow(EPISODE_COLUMNS)
        missing_w.writerow(MISSING_COLUMNS)
        uasc_w.writerow(UASC_COLUMNS)
        child_no = 0
        while counts["episodes"] < target_episodes or counts["missing"] < target_missing:
            child_no += 1
            child = str(100_000 + child_no * 7)
            uasc = rng.random() < 0.06
            male = rng.random() < (0.9 if uasc else 0.56)
            sex = ("M" if male else "F") if sex_coding == "letters" else ("1" if male else "2")
            age_at_entry = rng.randint(14, 17) if uasc else rng.randint(0, 17)
            entry = date(2015, 4, 1) + timedelta(days=rng.randrange(3650))
            dob = entry - timedelta(days=age_at_entry * 365 + rng.randrange(365))
            upn = f"{rng.choice(_LETTERS)}{rng.randrange(10**11):011d}{rng.choice(_LETTERS)}"
            header_w.writerow(
                (child, sex, _fmt(dob), "OOTH" if uasc else _pick(rng, _ETHNIC), upn, "", "")
            )
            counts["header"] += 1
            if uasc:
                eighteen = date(dob.year + 18, dob.month, min(dob.day, 28))
                uasc_w.writerow((child, sex, _fmt(dob), _fmt(eighteen)))
                counts["uasc"] += 1
            # Once the Episodes budget is spent, children still get a care history (not
            # written) so that the remaining Missing rows fall inside care.
            spans = _episodes(rng, episodes_w, child, entry, dob, counts, target_episodes)
            spent = counts["episodes"] >= target_episodes
            if counts["missing"] < target_missing and (spent or rng.random() < missing_chance):
                _missing(rng, missing_w, child, dob, spans, counts, target_missing)
    return SyntheticCounts(**counts)


def _episodes(
    rng: random.Random,
    writer: _RowWriter,
    child: str,
    entry: date,
    dob: date,
    counts: dict[str, int],
    budget: int,
) -> list[tuple[date, date | None]]:
    """Write one child's episodes (while under `budget`); return their (start, end) spans."""
    spans: list[tuple[date, date | None]] = []
    home = _postcode(rng)
    legal, need = _pick(rng, _LS), _pick(rng, _CIN)
    place, provider, placement = _pick(rng, _PLACE), _pick(rng, _PROVIDER), _postcode(rng)
    start, rne = entry, "S"
    last_day = date(2025, 3, 31)
    episodes = min(1 + int(rng.expovariate(0.45)), 12)
    for n in range(episodes):
        if n:
            rne = _pick(rng, _RNE_NEXT)
            if rne in ("L", "T", "U"):
                legal = _pick(rng, _LS)
            if rne != "L":
                place, provider, placement = (
                    _pick(rng, _PLACE),
                    _pick(rng, _PROVIDER),
                    _postcode(rng),
                )
        end: date | None = start + timedelta(days=rng.randint(7, 500))
        eighteen = date(dob.year + 18, dob.month, min(dob.day, 28))
        # The last episode ends the care (or stays open): an X1 always has a successor.
        final = (
            n == episodes - 1
            or counts["episodes"] + 1 >= budget
            or rng.random() < 0.3
            or end is None
            or end >= min(last_day, eighteen)
        )
        rec = reason = ""
        if final:
            if end is not None and end >= min(last_day, eighteen):
                end = None if end >= last_day else eighteen
                rec = "" if end is None else "E8"
            else:
                rec = _pick(rng, _REC_END)
        else:
            rec, reason = "X1", _pick(rng, _REASON)
        if counts["episodes"] < budget:
            writer.writerow(
                (
                    child,
                    _fmt(start),
                    rne,
                    legal,
                    need,
                    place,
                    provider,
                    _fmt(end) if end else "",
                    rec,
                    reason,
                    home,
                    placement,
                    "",
                )
            )
            counts["episodes"] += 1
        spans.append((start, end))
        if final or end is None:
            break
        start = end
    return spans


def _missing(
    rng: random.Random,
    writer: _RowWriter,
    child: str,
    dob: date,
    spans: list[tuple[date, date | None]],
    counts: dict[str, int],
    target: int,
) -> None:
    """Write a few missing/away episodes inside the child's time in care."""
    for _ in range(1 + int(rng.expovariate(0.5))):
        if counts["missing"] >= target:
            return
        start, end = rng.choice(spans)
        length = ((end or start + timedelta(days=365)) - start).days
        begin = start + timedelta(days=rng.randrange(max(length, 1)))
        back = "" if rng.random() < 0.04 else _fmt(begin + timedelta(days=rng.randint(0, 40)))
        kind = "M" if rng.random() < 0.45 else "A"
        writer.writerow((child, _fmt(dob), kind, _fmt(begin), back))
        counts["missing"] += 1
