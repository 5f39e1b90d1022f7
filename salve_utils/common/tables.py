"""Result tables on disk: small per-class tables as CSV, sweeps and per-image tables as Parquet.

Every reader goes through :func:`load_table`, which finds a table by name in either
format, so no reader cares which one it is. A table's format is declared once, by
name (:data:`PARQUET_TABLES`): the sweeps (every feature × class × strength, every
null draw, every image's α_crit) are Parquet, compressed with zstd and stored in
narrow types; the per-class summaries stay CSV, readable in a diff.

Narrow types without changing a single number: a CSV table is written with six
significant digits (``%.6g``), and so is a Parquet one — its floats are rounded to
six significant digits and stored as float32 (whose 24-bit mantissa holds six
decimal digits with room to spare), then widened on reading and rounded to six
digits again, which recovers exactly the float64 that reading the CSV would give.
Integers are stored in the smallest of int8/16/32/64 that holds them and read back
as int64; strings are dictionary-encoded (Parquet's default) and read back as
Python strings. So :func:`load_table` returns the same frame whichever format the
table was written in (:func:`write_table` then :func:`load_table`):

>>> import tempfile
>>> df = pd.DataFrame({"class": ["a", "b"], "strength": [0.1, 2 / 3], "n": [400, 390], "ok": [True, False]})
>>> with tempfile.TemporaryDirectory() as d:
...     a, b = Path(d, "t.csv"), Path(d, "t.parquet")
...     write_table(df, a); write_table(df, b)
...     pd.testing.assert_frame_equal(read_table_file(a), read_table_file(b))
...     read_table_file(b)["strength"].tolist()
[0.1, 0.666667]

A Parquet file is written without the pandas metadata block and with fixed writer
options, so the same rows give the same bytes on every rerun.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["NOT_STORED", "PARQUET_TABLES", "SIGNIFICANT", "find_table", "load_table", "read_table_file",
           "round_significant", "stored_columns", "table_hash", "table_path", "write_table"]

#: Tables stored as Parquet (the large ones: sweeps, null draws, per-image values); every other table is CSV.
PARQUET_TABLES = frozenset({
    "suppression_curves", "null_edits", "ablation_curves", "deep_edit_curves", "alpha_crit", "baseline_tradeoff",
    "composition", "seed_curve_bands", "tower_effects", "arm_curves",
})
#: Columns left out of a stored table: no chapter or claim reads them, and as continuous floats they would be most of
#: its size (the mean target logit is 6 of 9 MB of a 100-class suppression sweep even at four digits).
NOT_STORED: dict[str, tuple[str, ...]] = {"suppression_curves": ("mean_target_logit",)}
#: Significant digits every stored float keeps (the CSV tables' ``%.6g``).
SIGNIFICANT = 6
SUFFIXES = (".parquet", ".csv")
#: float32 holds 6 significant digits exactly on reading back only in its normal range.
_F32_RANGE = (1e-30, 1e30)


def table_path(folder: str | Path, name: str) -> Path:
    """Where table ``name`` is written in ``folder``: ``<name>.parquet`` for :data:`PARQUET_TABLES`, else CSV.

    >>> table_path("r", "null_edits").name, table_path("r", "claims").name
    ('null_edits.parquet', 'claims.csv')
    """
    return Path(folder) / f"{name}{'.parquet' if name in PARQUET_TABLES else '.csv'}"


def stored_columns(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """``df`` without the columns :data:`NOT_STORED` leaves out of table ``name``.

    >>> list(stored_columns(pd.DataFrame({"accuracy": [1.0], "mean_target_logit": [2.0]}), "suppression_curves"))
    ['accuracy']
    """
    drop = [c for c in NOT_STORED.get(name, ()) if c in df.columns]
    return df.drop(columns=drop) if drop else df


def find_table(folder: str | Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``folder``: its declared format first, then the other; ``None`` if neither."""
    first = table_path(folder, name)
    for path in (first, *(Path(folder) / f"{name}{s}" for s in SUFFIXES if s != first.suffix)):
        if path.is_file():
            return path
    return None


def load_table(folder: str | Path, name: str) -> pd.DataFrame:
    """Table ``name`` of a results folder, whichever format it was written in.

    Raises ``FileNotFoundError`` naming both files looked for.
    """
    path = find_table(folder, name)
    if path is None:
        raise FileNotFoundError(f"no table {name!r} in {folder} (looked for {name}.parquet and {name}.csv)")
    return read_table_file(path)


def round_significant(x: np.ndarray, digits: int = SIGNIFICANT) -> np.ndarray:
    """Round to ``digits`` significant digits, as float64 (what parsing ``f"{x:.{digits}g}"`` gives).

    >>> round_significant(np.array([np.float32(0.1), 123456.78, -2 / 3, 0.0, np.inf, np.nan])).tolist()
    [0.1, 123457.0, -0.666667, 0.0, inf, nan]
    """
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    ok = np.isfinite(x) & (x != 0)
    if not ok.any():
        return out
    v = x[ok]
    places = digits - 1 - np.floor(np.log10(np.abs(v))).astype(np.int64)  # decimals to keep
    res = np.empty_like(v)
    pos = places >= 0
    scale = 10.0 ** np.abs(places)  # exact powers of ten up to 1e22
    res[pos] = np.round(v[pos] * scale[pos]) / scale[pos]
    res[~pos] = np.round(v[~pos] / scale[~pos]) * scale[~pos]
    out[ok] = res
    return out


def _column(series: pd.Series):
    """One column as a narrow Arrow array (see the module docstring)."""
    import pyarrow as pa

    values = series.to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        return pa.array(values, type=pa.bool_())
    if pd.api.types.is_integer_dtype(series.dtype):
        for t in (np.int8, np.int16, np.int32):
            info = np.iinfo(t)
            if not len(values) or (values.min() >= info.min and values.max() <= info.max):
                return pa.array(values.astype(t))
        return pa.array(values.astype(np.int64))
    if pd.api.types.is_float_dtype(series.dtype):
        v = round_significant(values)
        mag = np.abs(v[np.isfinite(v) & (v != 0)])
        narrow = not len(mag) or (mag.min() >= _F32_RANGE[0] and mag.max() <= _F32_RANGE[1])
        return pa.array(v.astype(np.float32) if narrow else v, from_pandas=True)
    # strings (and mixed object columns, e.g. a null's draw: a number or a class name) are written as text, as a CSV
    missing = series.isna().to_numpy()
    text = [None if m else str(v) for v, m in zip(values, missing)]
    return pa.array(text, type=pa.string())


def _widen(df: pd.DataFrame) -> pd.DataFrame:
    """Back to the types a CSV reader gives: float64 (six significant digits), int64, Python strings."""
    for col in df.columns:
        dtype = df[col].dtype
        if dtype == np.float32:
            df[col] = round_significant(df[col].to_numpy())
        elif pd.api.types.is_integer_dtype(dtype) and dtype != np.int64:
            df[col] = df[col].astype(np.int64)
    return df


def write_table(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> None:
    """Write ``df`` to ``path`` as ``fmt`` (``"csv"`` or ``"parquet"``; default: the path's suffix), without index."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"a table is written as csv or parquet, got {fmt!r} ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(path, index=False, float_format=f"%.{SIGNIFICANT}g")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({str(c): _column(df[c]) for c in df.columns})
    pq.write_table(table, path, compression="zstd", compression_level=9, use_dictionary=True,
                   row_group_size=1 << 20, write_statistics=False, store_schema=False)


def read_table_file(path: str | Path) -> pd.DataFrame:
    """Read one table file (``.csv`` or ``.parquet``) into the frame a CSV reader would give."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return _widen(pq.read_table(path).to_pandas())
    return pd.read_csv(path)


def table_hash(df: pd.DataFrame) -> str:
    """SHA-256 of ``df`` as CSV text with six significant digits: the same rows give the same hash, in any format."""
    return hashlib.sha256(df.to_csv(index=False, float_format=f"%.{SIGNIFICANT}g").encode()).hexdigest()
