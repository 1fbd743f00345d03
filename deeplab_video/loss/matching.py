"""Exact minimum-cost bipartite assignment (Hungarian method) written with TensorFlow ops.

The solver is the shortest-augmenting-path form of the Hungarian method with row and column
potentials (Kuhn 1955; Jonker & Volgenant 1987), O(rows^2 * cols) per matrix. It runs the
whole batch in lockstep inside `tf.while_loop`s, so it works eagerly, inside `tf.function`,
under `jit_compile=True` (XLA) and inside `tf.distribute` replicas, with no host round trip.

Rectangular costs are solved directly: rows are added one at a time, so a matrix with
rows <= cols needs no padding, and a taller matrix is solved as its transpose. Every row of
the shorter side is assigned; the extra rows (or columns) of the longer side stay unassigned
and are reported as -1.

The solver is not differentiable: its inputs pass through `tf.stop_gradient`.

Costs must be finite. Forbidden pairs should get a large but moderate constant (the float32
potentials lose precision when costs span more than about 1e4 times their resolution).
"""

import functools
from typing import NamedTuple

import tensorflow as tf

# Index stored for a row or column that has no partner (the longer side of a rectangle).
UNASSIGNED = -1


def _dim(tensor: tf.Tensor, axis: int) -> int | tf.Tensor:
    """Returns the static size of `axis` when known (XLA needs it), else the dynamic one."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor)[axis]


class _Tree(NamedTuple):
    """The shortest-path tree grown from one inserted row, for a batch of matrices.

    Column and row 0 are the dummy pair; shapes are [batch] or [batch, cols + 1] /
    [batch, rows + 1].
    """

    active: tf.Tensor  # bool [batch]: still growing (no free column reached yet).
    col: tf.Tensor  # int32 [batch]: the column last added (the dummy column first).
    distance: tf.Tensor  # float [batch, cols + 1]: shortest reduced distance.
    previous: tf.Tensor  # int32 [batch, cols + 1]: predecessor column on the path.
    col_in_tree: tf.Tensor  # bool [batch, cols + 1]
    row_in_tree: tf.Tensor  # bool [batch, rows + 1]
    row_potential: tf.Tensor  # float [batch, rows + 1]
    col_potential: tf.Tensor  # float [batch, cols + 1]


def _grow_tree(padded: tf.Tensor, col_owner: tf.Tensor, tree: _Tree) -> _Tree:
    """One Dijkstra step on reduced costs: adds the closest column outside the tree.

    Args:
      padded: float [batch, rows + 1, cols + 1], the costs behind the dummy row and column.
      col_owner: int32 [batch, cols + 1], the row owning each column (0: free).
      tree: the tree so far; batch entries that stopped growing are left unchanged.
    """
    num_rows, num_cols = _dim(tree.row_in_tree, 1), _dim(tree.col_in_tree, 1)
    infinity = tf.constant(float("inf"), padded.dtype)
    col_in_tree = tree.col_in_tree | tf.one_hot(tree.col, num_cols, True, False)
    owner = tf.gather(col_owner, tree.col, batch_dims=1)
    row_in_tree = tree.row_in_tree | tf.one_hot(owner, num_rows, True, False)
    reduced = (
        tf.gather(padded, owner, batch_dims=1)
        - tf.gather(tree.row_potential, owner, batch_dims=1)[:, tf.newaxis]
        - tree.col_potential
    )
    outside = ~col_in_tree
    shorter = outside & (reduced < tree.distance)
    distance = tf.where(shorter, reduced, tree.distance)
    previous = tf.where(shorter, tree.col[:, tf.newaxis], tree.previous)
    candidates = tf.where(outside, distance, infinity)
    next_col = tf.argmin(candidates, axis=1, output_type=tf.int32)
    delta = tf.reduce_min(candidates, axis=1)[:, tf.newaxis]
    zero = tf.zeros_like(delta)
    row_potential = tree.row_potential + tf.where(row_in_tree, delta, zero)
    col_potential = tree.col_potential - tf.where(col_in_tree, delta, zero)
    distance -= tf.where(col_in_tree, zero, delta)

    keep = tree.active[:, tf.newaxis]
    reached_free = tf.equal(tf.gather(col_owner, next_col, batch_dims=1), 0)
    return _Tree(
        active=tree.active & ~reached_free,
        col=tf.where(tree.active, next_col, tree.col),
        distance=tf.where(keep, distance, tree.distance),
        previous=tf.where(keep, previous, tree.previous),
        col_in_tree=tf.where(keep, col_in_tree, tree.col_in_tree),
        row_in_tree=tf.where(keep, row_in_tree, tree.row_in_tree),
        row_potential=tf.where(keep, row_potential, tree.row_potential),
        col_potential=tf.where(keep, col_potential, tree.col_potential),
    )


def _flip_path_step(
    previous: tf.Tensor, col: tf.Tensor, col_owner: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Moves one column back along the augmenting path, handing it to its predecessor's row.

    Args:
      previous: int32 [batch, cols + 1], predecessor column of every tree column.
      col: int32 [batch], the current column of the walk (0: done).
      col_owner: int32 [batch, cols + 1].

    Returns:
      (the predecessor column, the updated col_owner).
    """
    active = tf.not_equal(col, 0)
    prev_col = tf.gather(previous, col, batch_dims=1)
    prev_owner = tf.gather(col_owner, prev_col, batch_dims=1)
    at_col = tf.one_hot(col, tf.shape(col_owner)[1], True, False) & active[:, tf.newaxis]
    col_owner = tf.where(at_col, prev_owner[:, tf.newaxis], col_owner)
    return tf.where(active, prev_col, col), col_owner


def _insert_row(
    padded: tf.Tensor,
    row: tf.Tensor,
    row_potential: tf.Tensor,
    col_potential: tf.Tensor,
    col_owner: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Assigns row `row` (1-based): grows its shortest-path tree, then flips the path.

    Returns:
      (row + 1, row_potential, col_potential, col_owner) after the insertion.
    """
    batch = _dim(padded, 0)
    num_rows, num_cols = _dim(padded, 1) - 1, _dim(padded, 2) - 1
    is_dummy_col = tf.equal(tf.range(num_cols + 1), 0)[tf.newaxis, :]
    col_owner = tf.where(is_dummy_col, row, col_owner)
    tree = _Tree(
        active=tf.ones([batch], tf.bool),
        col=tf.zeros([batch], tf.int32),
        distance=tf.fill([batch, num_cols + 1], tf.constant(float("inf"), padded.dtype)),
        previous=tf.zeros([batch, num_cols + 1], tf.int32),
        col_in_tree=tf.zeros([batch, num_cols + 1], tf.bool),
        row_in_tree=tf.zeros([batch, num_rows + 1], tf.bool),
        row_potential=row_potential,
        col_potential=col_potential,
    )
    tree = tf.while_loop(
        lambda tree: tf.reduce_any(tree.active),
        lambda tree: (_grow_tree(padded, col_owner, tree),),
        (tree,),
        maximum_iterations=num_cols + 1,
    )[0]
    _, col_owner = tf.while_loop(
        lambda col, _: tf.reduce_any(tf.not_equal(col, 0)),
        functools.partial(_flip_path_step, tree.previous),
        (tree.col, col_owner),
        maximum_iterations=num_rows + 1,
    )
    return row + 1, tree.row_potential, tree.col_potential, col_owner


def _solve_wide(cost: tf.Tensor) -> tf.Tensor:
    """Solves min-cost assignment for costs with no more rows than columns.

    Rows are inserted one by one; each insertion grows a shortest-path tree over columns
    (Dijkstra on reduced costs), updates the potentials and flips the augmenting path.
    Internally row 0 and column 0 are a dummy pair, so `col_owner == 0` means a free column.

    Args:
      cost: float [batch, rows, cols] with rows <= cols (static or dynamic sizes).

    Returns:
      int32 [batch, cols]: the row assigned to every column, or UNASSIGNED.
    """
    dtype = cost.dtype
    batch, num_rows, num_cols = (_dim(cost, axis) for axis in range(3))
    # Shifting each row by its minimum keeps the optimum and keeps potentials small.
    cost = cost - tf.reduce_min(cost, axis=2, keepdims=True)
    padded = tf.pad(cost, [[0, 0], [1, 0], [1, 0]])
    _, _, _, col_owner = tf.while_loop(
        lambda row, *_: row <= num_rows,
        functools.partial(_insert_row, padded),
        (
            tf.constant(1),
            tf.zeros([batch, num_rows + 1], dtype),
            tf.zeros([batch, num_cols + 1], dtype),
            tf.zeros([batch, num_cols + 1], tf.int32),
        ),
        maximum_iterations=num_rows,
    )
    return col_owner[:, 1:] - 1


def _invert(partner: tf.Tensor, size: int | tf.Tensor) -> tf.Tensor:
    """Inverts a partial one-to-one map given as partner indices.

    Args:
      partner: int32 [batch, num_items]: the partner of every item, or UNASSIGNED.
      size: the number of partners (int or int32 scalar).

    Returns:
      int32 [batch, size]: the item of every partner, or UNASSIGNED.
    """
    hits = tf.equal(partner[:, tf.newaxis, :], tf.range(size)[tf.newaxis, :, tf.newaxis])
    items = tf.range(_dim(partner, 1))[tf.newaxis, tf.newaxis, :]
    index = tf.reduce_sum(tf.where(hits, items, tf.zeros_like(items)), axis=2)
    return tf.where(tf.reduce_any(hits, axis=2), index, UNASSIGNED)


def linear_sum_assignment(cost: tf.Tensor, maximize: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Solves a batch of linear sum assignment problems exactly.

    Args:
      cost: float32 or float64 [batch, rows, cols], finite. Rows and columns may differ.
      maximize: whether to maximise the total instead of minimising it.

    Returns:
      row_to_col: int32 [batch, rows], the column assigned to each row, or UNASSIGNED (-1)
        when rows > cols.
      col_to_row: int32 [batch, cols], the row assigned to each column, or UNASSIGNED (-1)
        when cols > rows.

    Raises:
      ValueError: if `cost` is not a rank-3 floating-point tensor.
    """
    cost = tf.stop_gradient(tf.convert_to_tensor(cost))
    if cost.shape.rank != 3 or not cost.dtype.is_floating:
        raise ValueError(
            f"cost must be a float tensor [batch, rows, cols]; got {cost.dtype.name} with "
            f"shape {cost.shape}."
        )
    if maximize:
        cost = -cost
    num_rows, num_cols = _dim(cost, 1), _dim(cost, 2)

    def solve_as_is():
        col_to_row = _solve_wide(cost)
        return _invert(col_to_row, num_rows), col_to_row

    def solve_transposed():
        row_to_col = _solve_wide(tf.transpose(cost, [0, 2, 1]))
        return row_to_col, _invert(row_to_col, num_cols)

    if isinstance(num_rows, int) and isinstance(num_cols, int):
        return solve_as_is() if num_rows <= num_cols else solve_transposed()
    return tf.cond(num_rows <= num_cols, solve_as_is, solve_transposed)


def assignment_matrix(cost: tf.Tensor, maximize: bool = False) -> tf.Tensor:
    """Returns the optimal assignment of a batch of costs as a 0/1 matrix.

    Args:
      cost: float32 or float64 [batch, rows, cols], finite.
      maximize: whether to maximise the total instead of minimising it.

    Returns:
      [batch, rows, cols] tensor of `cost.dtype`, 1 where a row is assigned to a column and
      0 elsewhere; every row and column holds at most one 1 and min(rows, cols) pairs are set.
    """
    cost = tf.convert_to_tensor(cost)
    row_to_col, _ = linear_sum_assignment(cost, maximize=maximize)
    return tf.one_hot(row_to_col, _dim(cost, 2), dtype=cost.dtype)


def linear_sum_assignment_2d(
    cost: tf.Tensor, maximize: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """Solves one (unbatched) linear sum assignment problem exactly.

    Args:
      cost: float32 or float64 [rows, cols], finite; either side may be empty.
      maximize: whether to maximise the total instead of minimising it.

    Returns:
      row_to_col: int32 [rows], the column of each row or UNASSIGNED (-1).
      col_to_row: int32 [cols], the row of each column or UNASSIGNED (-1).

    Raises:
      ValueError: if `cost` is not a rank-2 floating-point tensor.
    """
    cost = tf.convert_to_tensor(cost)
    if cost.shape.rank != 2:
        raise ValueError(f"cost must be a float tensor [rows, cols]; got shape {cost.shape}.")
    row_to_col, col_to_row = linear_sum_assignment(cost[tf.newaxis], maximize=maximize)
    return row_to_col[0], col_to_row[0]
