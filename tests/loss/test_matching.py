"""Tests for deeplab_video.loss.matching against scipy.optimize.linear_sum_assignment."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from deeplab_video.loss import matching


def _check_valid(row_to_col: np.ndarray, col_to_row: np.ndarray, rows: int, cols: int) -> None:
    """Checks that both maps are consistent one-to-one maps covering min(rows, cols) pairs."""
    assert row_to_col.shape == (rows,) and col_to_row.shape == (cols,)
    assigned_rows = np.flatnonzero(row_to_col >= 0)
    assert len(assigned_rows) == min(rows, cols)
    assert np.all(row_to_col[row_to_col < 0] == matching.UNASSIGNED)
    assert len(set(row_to_col[assigned_rows].tolist())) == len(assigned_rows)
    np.testing.assert_array_equal(col_to_row[row_to_col[assigned_rows]], assigned_rows)
    assert np.sum(col_to_row >= 0) == min(rows, cols)


def _total(cost: np.ndarray, row_to_col: np.ndarray) -> float:
    rows = np.flatnonzero(row_to_col >= 0)
    return float(cost[rows, row_to_col[rows]].sum())


def _assert_optimal(cost: np.ndarray, row_to_col, col_to_row, unique: bool) -> None:
    row_to_col, col_to_row = np.asarray(row_to_col), np.asarray(col_to_row)
    for b in range(cost.shape[0]):
        _check_valid(row_to_col[b], col_to_row[b], cost.shape[1], cost.shape[2])
        ref_rows, ref_cols = scipy.optimize.linear_sum_assignment(cost[b])
        ref_total = float(cost[b][ref_rows, ref_cols].sum())
        np.testing.assert_allclose(_total(cost[b], row_to_col[b]), ref_total, rtol=1e-5, atol=1e-5)
        if unique:
            np.testing.assert_array_equal(row_to_col[b][ref_rows], ref_cols)


@pytest.mark.parametrize(
    "shape", [(3, 6, 6), (2, 5, 9), (2, 9, 5), (1, 1, 4), (2, 4, 1), (1, 1, 1)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_costs_match_scipy_eagerly(shape, dtype):
    cost = np.random.default_rng(sum(shape)).normal(size=shape).astype(dtype)
    row_to_col, col_to_row = matching.linear_sum_assignment(tf.constant(cost))
    assert row_to_col.dtype == tf.int32 and col_to_row.dtype == tf.int32
    _assert_optimal(cost, row_to_col, col_to_row, unique=True)


@pytest.mark.parametrize("shape", [(4, 12, 12), (3, 16, 7), (3, 7, 16)])
def test_random_costs_match_scipy_under_xla(shape):
    cost = np.random.default_rng(7).uniform(size=shape).astype(np.float32)
    solve = tf.function(matching.linear_sum_assignment, jit_compile=True)
    row_to_col, col_to_row = solve(tf.constant(cost))
    _assert_optimal(cost, row_to_col, col_to_row, unique=True)


@pytest.mark.parametrize("spec_shape", [[None, None, None], [None, 4, 7]])
def test_dynamic_shapes_in_tf_function(spec_shape):
    solve = tf.function(
        matching.linear_sum_assignment, input_signature=[tf.TensorSpec(spec_shape, tf.float32)]
    )
    rng = np.random.default_rng(3)
    shapes = [(2, 4, 7), (2, 7, 4), (1, 5, 5)] if spec_shape[1] is None else [(3, 4, 7)]
    for shape in shapes:
        cost = rng.normal(size=shape).astype(np.float32)
        row_to_col, col_to_row = solve(tf.constant(cost))
        _assert_optimal(cost, row_to_col, col_to_row, unique=True)


def test_all_equal_costs_give_a_full_assignment():
    cost = np.full((2, 5, 5), 0.25, np.float32)
    row_to_col, col_to_row = matching.linear_sum_assignment(tf.constant(cost))
    _assert_optimal(cost, row_to_col, col_to_row, unique=False)


@pytest.mark.parametrize("shape", [(6, 8, 8), (4, 6, 10), (4, 10, 6)])
def test_integer_costs_with_many_ties(shape):
    cost = np.random.default_rng(11).integers(0, 3, size=shape).astype(np.float32)
    row_to_col, col_to_row = tf.function(matching.linear_sum_assignment, jit_compile=True)(
        tf.constant(cost)
    )
    _assert_optimal(cost, row_to_col, col_to_row, unique=False)


def test_product_costs_need_many_augmentations():
    # cost[i, j] = i * j: the optimum pairs the largest rows with the smallest columns.
    index = np.arange(9, dtype=np.float64)
    cost = np.outer(index, index)[np.newaxis]
    row_to_col, col_to_row = matching.linear_sum_assignment(tf.constant(cost))
    _assert_optimal(cost, row_to_col, col_to_row, unique=False)
    assert _total(cost[0], row_to_col.numpy()[0]) == sum(i * (8 - i) for i in range(9))


def test_maximize_equals_minimizing_the_negation():
    cost = np.random.default_rng(5).uniform(size=(2, 6, 4)).astype(np.float32)
    row_to_col, col_to_row = matching.linear_sum_assignment(tf.constant(cost), maximize=True)
    _assert_optimal(-cost, row_to_col, col_to_row, unique=True)


def test_assignment_matrix_is_a_partial_permutation():
    cost = np.random.default_rng(2).normal(size=(3, 4, 6)).astype(np.float32)
    matrix = matching.assignment_matrix(tf.constant(cost)).numpy()
    assert matrix.shape == (3, 4, 6) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix.sum(axis=2), np.ones((3, 4)))
    assert np.all(matrix.sum(axis=1) <= 1)
    for b in range(3):
        rows, cols = scipy.optimize.linear_sum_assignment(cost[b])
        np.testing.assert_array_equal(np.argwhere(matrix[b] == 1), np.stack([rows, cols], 1))


def test_unbatched_wrapper_and_empty_sides():
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0]], np.float32)
    row_to_col, col_to_row = matching.linear_sum_assignment_2d(tf.constant(cost))
    np.testing.assert_array_equal(row_to_col.numpy(), [1, 0])
    np.testing.assert_array_equal(col_to_row.numpy(), [1, 0, -1])

    solve = tf.function(
        matching.linear_sum_assignment_2d,
        input_signature=[tf.TensorSpec([None, None], tf.float32)],
    )
    for rows, cols in [(0, 3), (3, 0), (0, 0)]:
        row_to_col, col_to_row = solve(tf.zeros([rows, cols]))
        np.testing.assert_array_equal(row_to_col.numpy(), -np.ones(rows))
        np.testing.assert_array_equal(col_to_row.numpy(), -np.ones(cols))


def test_solver_does_not_propagate_gradients():
    cost = tf.Variable(np.random.default_rng(1).normal(size=(1, 3, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        matrix = matching.assignment_matrix(cost)
        total = tf.reduce_sum(matrix * cost)
    gradient = tape.gradient(total, cost).numpy()
    np.testing.assert_array_equal(gradient, matrix.numpy())


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, rows, cols"):
        matching.linear_sum_assignment(tf.zeros([3, 3]))
    with pytest.raises(ValueError, match="rows, cols"):
        matching.linear_sum_assignment_2d(tf.zeros([1, 3, 3]))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(8, 128, 128), (8, 128, 40), (8, 40, 128)])
def test_full_size_costs_match_scipy_under_xla(shape):
    cost = np.random.default_rng(13).uniform(size=shape).astype(np.float32)
    row_to_col, col_to_row = tf.function(matching.linear_sum_assignment, jit_compile=True)(
        tf.constant(cost)
    )
    _assert_optimal(cost, row_to_col, col_to_row, unique=True)
