"""Slow, loop-based numpy references of the Video-kMaX loss terms, one clip at a time.

Written from the formulas (kMaX-DeepLab, Video-kMaX) independently of the TF code: explicit
loops over queries, tubes and pixels, and scipy for the matching (on real tubes only).
Inputs are one clip, flattened: pixel axis = all T frames.
"""

import numpy as np
import scipy.optimize


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def mean_over_nonzero(values: np.ndarray) -> float:
    return float(values.sum() / max(np.count_nonzero(values), 1))


def clean_targets(tube_masks, tube_valid, void):
    """One clip: tube_masks [T, h, w, G], tube_valid [G], void [T, h, w].

    Returns gt [P, G] (void removed, padding or empty tubes removed), real [G] bool,
    pixel_valid [P] bool.
    """
    num_tubes = tube_masks.shape[-1]
    gt = tube_masks.reshape(-1, num_tubes).astype(np.float64).copy()
    non_void = void.reshape(-1) < 0.5
    gt[~non_void] = 0.0
    real = np.array([tube_valid[g] > 0.5 and gt[:, g].sum() > 0 for g in range(num_tubes)])
    gt[:, ~real] = 0.0
    return gt, real, gt.sum(axis=1) > 0


def match(mask_logits, class_logits, gt, real, classes, pixel_valid, eps):
    """Returns a dict: query_to_tube [N] (-1 unmatched) and the matched statistics."""
    num_pixels, num_queries = mask_logits.shape
    probs = softmax(mask_logits.astype(np.float64), axis=1)
    class_probs = softmax(class_logits.astype(np.float64), axis=1)
    real_tubes = np.flatnonzero(real)
    dice = np.zeros((gt.shape[1], num_queries))
    class_sim = np.zeros((gt.shape[1], num_queries))
    for g in real_tubes:
        for n in range(num_queries):
            inter = sum(gt[p, g] * probs[p, n] for p in range(num_pixels) if pixel_valid[p])
            pred_area = sum(probs[p, n] for p in range(num_pixels) if pixel_valid[p])
            dice[g, n] = 2 * inter / (gt[:, g].sum() + pred_area + eps)
            class_sim[g, n] = class_probs[n, classes[g]]
    rows, cols = scipy.optimize.linear_sum_assignment(-(dice * class_sim)[real_tubes])
    query_to_tube = -np.ones(num_queries, np.int64)
    query_to_tube[cols] = real_tubes[rows]

    matched_valid = np.zeros(num_pixels, bool)
    for n in range(num_queries):
        if query_to_tube[n] >= 0:
            matched_valid |= gt[:, query_to_tube[n]] > 0
    void_ratio = np.array(
        [probs[~matched_valid, n].sum() / (probs[:, n].sum() + eps) for n in range(num_queries)]
    )
    matched_dice = np.array(
        [dice[query_to_tube[n], n] if query_to_tube[n] >= 0 else 0.0 for n in range(num_queries)]
    )
    matched_prob = np.array(
        [
            class_sim[query_to_tube[n], n] if query_to_tube[n] >= 0 else 0.0
            for n in range(num_queries)
        ]
    )
    return {
        "query_to_tube": query_to_tube,
        "pixel_valid": matched_valid,
        "void_ratio": void_ratio,
        "matched_dice": matched_dice,
        "matched_prob": matched_prob,
    }


def pq_terms(mask_logits, class_logits, m, gt, classes, alpha, floor, eps):
    """Returns (mask dice term, class term) of one clip for one decoder layer."""
    num_queries = mask_logits.shape[1]
    num_classes = class_logits.shape[1] - 1
    probs = softmax(mask_logits.astype(np.float64), axis=1)
    probs[~m["pixel_valid"]] = 0.0
    dice_term = 0.0
    class_losses = np.zeros(num_queries)
    for n in range(num_queries):
        tube = m["query_to_tube"][n]
        log_p = log_softmax(class_logits[n].astype(np.float64))
        if tube >= 0:
            target = gt[:, tube]
            dice = (2 * (probs[:, n] * target).sum() + eps) / (
                probs[:, n].sum() + target.sum() + eps
            )
            dice_term += (1 - dice) * max(m["matched_prob"][n], floor)
            class_losses[n] = -log_p[classes[tube]] * alpha * max(m["matched_dice"][n], floor)
        else:
            class_losses[n] = -log_p[num_classes] * (1 - alpha) * max(m["void_ratio"][n], floor)
    return dice_term * alpha / num_queries, mean_over_nonzero(class_losses)


def mask_id(mask_logits, m, gt):
    log_p = log_softmax(mask_logits.astype(np.float64), axis=1)
    losses = np.zeros(mask_logits.shape[0])
    for n, tube in enumerate(m["query_to_tube"]):
        if tube >= 0:
            for p in np.flatnonzero(gt[:, tube] > 0):
                losses[p] = -log_p[p, n]
    return mean_over_nonzero(losses)


def instance_discrimination(features, gt, pixel_valid, temperature):
    """All pixels sampled: soft cross-entropy over valid pixels only."""
    valid = np.flatnonzero(pixel_valid)
    tube_of = gt.argmax(axis=1)
    losses = []
    for k in valid:
        logits = np.array([features[k] @ features[j] / temperature for j in valid])
        log_p = log_softmax(logits)
        same = np.array([tube_of[j] == tube_of[k] for j in valid], np.float64)
        losses.append(-(same / same.sum() * log_p).sum())
    return mean_over_nonzero(np.array(losses))


def semantic(logits, labels, weights, top_k_percent, ignore_label):
    losses = np.zeros(len(labels))
    for p, label in enumerate(labels):
        if label != ignore_label:
            losses[p] = -log_softmax(logits[p].astype(np.float64))[label] * weights[p]
    keep = max(int(round(top_k_percent * len(losses))), 1)
    return mean_over_nonzero(np.sort(losses)[::-1][:keep])
