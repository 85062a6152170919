"""The metrics table in a notebook: pandas when installed, else aligned text."""

from __future__ import annotations

import sys

import pyarrow as pa
import pytest

from fslsage_ray.outputs.table_view import TextTable, table_view

TABLE = pa.table(
    {
        "round": [0, 1],
        "test_acc": [0.5, 0.91234],
        "test_loss": [1.5, float("nan")],
        "comm_gib_cum": [0.001, 0.002],
        "align_s": [0.3, 0.0],
    }
)


def test_pandas_frame_with_the_default_columns():
    pytest.importorskip("pandas")
    frame = table_view(TABLE)
    assert list(frame.columns) == ["round", "test_acc", "test_loss", "comm_gib_cum"]
    assert "<table" in frame._repr_html_()


def test_all_columns_of_a_table_that_is_not_a_metrics_table():
    pytest.importorskip("pandas")
    summary = pa.table({"method": ["FedAvg"], "final_acc": [0.9]})
    assert list(table_view(summary).columns) == ["method", "final_acc"]


def test_text_view_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    view = table_view(TABLE, ["round", "test_acc", "test_loss"])
    assert isinstance(view, TextTable)
    assert repr(view).splitlines() == [
        "round  test_acc  test_loss",
        "    0       0.5        1.5",
        "    1    0.9123        nan",
    ]


def test_unknown_column_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"no column\(s\) \['acc'\] in the table") as info:
        table_view(TABLE, ["round", "acc"])
    assert "\n" not in str(info.value)
