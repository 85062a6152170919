"""The run log's line on client sizes stays short at any client count."""

from fslsage_ray.simulation import sizes_text


def test_few_clients_are_listed_many_are_summarised():
    assert sizes_text([5, 6, 7]) == "[5, 6, 7]"
    text = sizes_text([5] * 9_999 + [9])
    assert text == "min 5, median 5, max 9, total 50004"
