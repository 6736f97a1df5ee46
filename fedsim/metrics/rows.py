"""Score reconstructed feature rows (tabular data) against the rows they came from.

Attacks on a batch recover its rows in an arbitrary order. The Hungarian algorithm pairs
them with the originals by the smallest total error, where a row's error is the mean
squared error of its continuous columns plus, for each one-hot group, 1 if the category
differs. The scores are the matched rows' mean squared error over the continuous
columns (in the units the model is fed) and the share of categorical columns right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class RowMatching:
    """`order[i]` is the reconstruction paired with original row i; `mse[i]` its error over
    the continuous columns; `categorical[i]` its share of categorical columns right
    (None without one-hot groups)."""

    order: torch.Tensor
    mse: torch.Tensor
    categorical: torch.Tensor | None


def _parts(
    rows: torch.Tensor, categorical: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(continuous columns, category index per group) of (N, F) rows."""
    inside = {i for start, stop in categorical for i in range(start, stop)}
    continuous = [i for i in range(rows.shape[1]) if i not in inside]
    values = rows[:, continuous].double()
    if not categorical:
        return values, None
    codes = torch.stack([rows[:, a:b].argmax(dim=1) for a, b in categorical], dim=1)
    return values, codes


def match_rows(
    preds: torch.Tensor, target: torch.Tensor, categorical: Sequence[tuple[int, int]] = ()
) -> RowMatching:
    """The pairing of reconstructed rows `preds` with original rows `target` (both (N, F))
    of smallest total error, and each original's matched scores."""
    if preds.ndim != 2 or preds.shape != target.shape:
        raise ValueError(
            f"expected two (N, F) batches of one shape, got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )
    p_values, p_codes = _parts(preds.detach().cpu(), categorical)
    t_values, t_codes = _parts(target.detach().cpu(), categorical)
    width = max(p_values.shape[1], 1)
    squared = (p_values[:, None, :] - t_values[None, :, :]).square().sum(-1) / width
    wrong = None
    cost = squared
    if p_codes is not None and t_codes is not None:
        wrong = (p_codes[:, None, :] != t_codes[None, :, :]).double().mean(-1)
        cost = squared + wrong
    pred_index, target_index = linear_sum_assignment(cost.numpy())
    order = torch.empty(len(target_index), dtype=torch.long)
    order[torch.as_tensor(target_index)] = torch.as_tensor(pred_index, dtype=torch.long)
    columns = torch.arange(len(order))
    return RowMatching(
        order=order,
        mse=squared[order, columns],
        categorical=None if wrong is None else 1.0 - wrong[order, columns],
    )


def row_scores(
    preds: torch.Tensor, target: torch.Tensor, categorical: Sequence[tuple[int, int]] = ()
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Row by row, unmatched: the MSE of `preds`' continuous columns against `target`'s
    and the share of categorical columns right (None without one-hot groups)."""
    p_values, p_codes = _parts(preds.detach().cpu(), categorical)
    t_values, t_codes = _parts(target.detach().cpu(), categorical)
    mse = (p_values - t_values).square().sum(-1) / max(p_values.shape[1], 1)
    if p_codes is None or t_codes is None:
        return mse, None
    return mse, (p_codes == t_codes).double().mean(-1)
