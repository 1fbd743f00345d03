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

import tensorflow as tf

# Index stored for a row or column that has no partner (the longer side of a rectangle).
UNASSIGNED = -1


def _dim(tensor: tf.Tensor, axis: int) -> int | tf.Tensor:
    """Returns the static size of `axis` when known (XLA needs it), else the dynamic one."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor)[axis]


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
    infinity = tf.constant(float("inf"), dtype)

    row_potential = tf.zeros([batch, num_rows + 1], dtype)
    col_potential = tf.zeros([batch, num_cols + 1], dtype)
    col_owner = tf.zeros([batch, num_cols + 1], tf.int32)
    is_dummy_col = tf.equal(tf.range(num_cols + 1), 0)[tf.newaxis, :]

    def insert_row(row, row_potential, col_potential, col_owner):
        col_owner = tf.where(is_dummy_col, row, col_owner)
        state = (
            tf.ones([batch], tf.bool),  # Still growing its tree.
            tf.zeros([batch], tf.int32),  # Current column (the dummy column first).
            tf.fill([batch, num_cols + 1], infinity),  # Shortest reduced distance.
            tf.zeros([batch, num_cols + 1], tf.int32),  # Predecessor column on the path.
            tf.zeros([batch, num_cols + 1], tf.bool),  # Columns in the tree.
            tf.zeros([batch, num_rows + 1], tf.bool),  # Rows in the tree.
            row_potential,
            col_potential,
        )

        def grow_tree(active, col, distance, previous, col_in_tree, row_in_tree, row_pot, col_pot):
            col_in_tree_next = col_in_tree | tf.one_hot(col, num_cols + 1, True, False)
            owner = tf.gather(col_owner, col, batch_dims=1)
            row_in_tree_next = row_in_tree | tf.one_hot(owner, num_rows + 1, True, False)
            reduced = (
                tf.gather(padded, owner, batch_dims=1)
                - tf.gather(row_pot, owner, batch_dims=1)[:, tf.newaxis]
                - col_pot
            )
            outside = ~col_in_tree_next
            shorter = outside & (reduced < distance)
            distance_next = tf.where(shorter, reduced, distance)
            previous_next = tf.where(shorter, col[:, tf.newaxis], previous)
            candidates = tf.where(outside, distance_next, infinity)
            next_col = tf.argmin(candidates, axis=1, output_type=tf.int32)
            delta = tf.reduce_min(candidates, axis=1)[:, tf.newaxis]
            zero = tf.zeros_like(delta)
            row_pot_next = row_pot + tf.where(row_in_tree_next, delta, zero)
            col_pot_next = col_pot - tf.where(col_in_tree_next, delta, zero)
            distance_next -= tf.where(col_in_tree_next, zero, delta)

            keep = active[:, tf.newaxis]
            reached_free = tf.equal(tf.gather(col_owner, next_col, batch_dims=1), 0)
            return (
                active & ~reached_free,
                tf.where(active, next_col, col),
                tf.where(keep, distance_next, distance),
                tf.where(keep, previous_next, previous),
                tf.where(keep, col_in_tree_next, col_in_tree),
                tf.where(keep, row_in_tree_next, row_in_tree),
                tf.where(keep, row_pot_next, row_pot),
                tf.where(keep, col_pot_next, col_pot),
            )

        _, free_col, _, previous, _, _, row_potential, col_potential = tf.while_loop(
            lambda active, *_: tf.reduce_any(active),
            grow_tree,
            state,
            maximum_iterations=num_cols + 1,
        )

        def flip_path(col, col_owner):
            active = tf.not_equal(col, 0)
            prev_col = tf.gather(previous, col, batch_dims=1)
            prev_owner = tf.gather(col_owner, prev_col, batch_dims=1)
            at_col = tf.one_hot(col, num_cols + 1, True, False) & active[:, tf.newaxis]
            col_owner = tf.where(at_col, prev_owner[:, tf.newaxis], col_owner)
            return tf.where(active, prev_col, col), col_owner

        _, col_owner = tf.while_loop(
            lambda col, _: tf.reduce_any(tf.not_equal(col, 0)),
            flip_path,
            (free_col, col_owner),
            maximum_iterations=num_rows + 1,
        )
        return row + 1, row_potential, col_potential, col_owner

    _, _, _, col_owner = tf.while_loop(
        lambda row, *_: row <= num_rows,
        insert_row,
        (tf.constant(1), row_potential, col_potential, col_owner),
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
