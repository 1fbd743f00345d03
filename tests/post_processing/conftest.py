"""Fixtures of the post-processing tests."""

import contextlib

import pytest

from deeplab_video.post_processing import op_set


@pytest.fixture(params=["native kernel", "graph ops"])
def native_and_graph_ops(request):
    """Runs a test twice: where native kernels may run, and inside graph_ops_only().

    Use it as `pytestmark = pytest.mark.usefixtures("native_and_graph_ops")`; the code the
    test traces or runs eagerly takes the native kernels in the first run only.
    """
    graph_ops = request.param == "graph ops"
    with op_set.graph_ops_only() if graph_ops else contextlib.nullcontext():
        assert (op_set.native_kernels() is None) == graph_ops
        yield
