"""The graph's links, resolved once per graph, are what reverse() makes for each name."""

import pytest
from django.urls import reverse

from insights import svg


@pytest.mark.parametrize("name", ["db", "shop_db-1.data", "e1:pg", "a b", "x?y#z", "100%", "ü", "semi;colon&amp"])
def test_the_resolved_once_link_is_reverses(name):
    assert svg._url_for("volume_detail")(name) == reverse("volume_detail", args=[name])


def test_a_name_that_is_no_path_segment_is_refused_as_reverse_refuses_it():
    from django.urls import NoReverseMatch

    for name in ("a/b", ""):
        with pytest.raises(NoReverseMatch):
            svg._url_for("volume_detail")(name)
