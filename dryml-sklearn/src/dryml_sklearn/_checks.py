"""Which scikit-learn types a file may hold beyond skops' defaults, and the checks that make
them safe to trust.

skops trusts scikit-learn's public estimators by default but deliberately not the objects that
hold raw node indices (decision trees, histogram-gradient-boosting predictors, KD/ball trees):
scikit-learn indexes with them without bounds checks, so a crafted file could crash the process
at ``predict``. This plugin trusts those types *because* it checks every index they hold right
after loading, before the model is handed to the caller (:func:`check_loaded`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml.errors import FormatError

__all__ = ["EXTRA_TRUSTED", "TREE", "check_loaded"]

_METRICS = "sklearn.metrics._dist_metrics"
#: Distance metrics that read nothing but the columns they are given (Minkowski its exponent
#: and weights too, Haversine two columns: check_metric), boolean ones included.
_PLAIN_METRICS = ("Euclidean", "Manhattan", "Chebyshev", "Minkowski", "Canberra", "BrayCurtis",
                  "Haversine", "Hamming", "Matching", "Jaccard", "Dice", "Kulsinski",
                  "RogersTanimoto", "RussellRao", "SokalMichener", "SokalSneath")
#: scikit-learn's decision-tree storage (compiled).
TREE = "sklearn.tree._tree.Tree"
#: Types trusted on top of skops' defaults (checked by :func:`check_loaded` where needed).
EXTRA_TRUSTED: tuple[str, ...] = (
    TREE,
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    # parameter-free distance metrics, and Minkowski's (checked: check_metric; the states of
    # all of them and of the trees: _states.check_states); metrics with a matrix
    # (Mahalanobis, SEuclidean) index it with sizes of their own
    *(f"{_METRICS}.{name}Distance{bits}" for name in _PLAIN_METRICS for bits in ("64", "32")),
    # HistGradientBoosting's categorical preprocessing: skops audits a partial's function and
    # arguments on their own, and check_array only validates its input
    "functools.partial",
    "sklearn.utils.validation.check_array",
    # MLP's optimizer state (plain numpy arrays and floats), kept for warm starts
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)


def _bad(what: str, why: str) -> FormatError:
    return FormatError(f"the file's {what} is inconsistent ({why}); the file is damaged or "
                       "was crafted, so the model was not returned")


def _check_children(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, what: str) -> None:
    """Internal nodes point forward to existing nodes (no cycles, nothing out of range)."""
    n = len(left)
    ids = np.arange(n)
    inner = ~leaf
    for side, child in (("left", left), ("right", right)):
        child = child.astype(np.int64)
        if np.any(inner & ((child <= ids) | (child >= n))):
            raise _bad(what, f"a {side} child index is out of range")


def check_tree(tree: Any, n_features: int | None) -> None:
    """Bounds of a fitted ``sklearn.tree._tree.Tree`` (DecisionTree*, forests, GB)."""
    left, right = tree.children_left, tree.children_right
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise _bad("decision tree", "a node has exactly one child")
    _check_children(left, right, leaf, "decision tree")
    limit = tree.n_features if n_features is None else min(tree.n_features, n_features)
    feature = tree.feature[~leaf]
    if np.any((feature < 0) | (feature >= limit)):
        raise _bad("decision tree", "a split uses a feature index out of range")
    # predict reads one value row per leaf, n_outputs x max_n_classes of them: a tree without
    # nodes (or values) read past an empty buffer, and looped forever
    classes = np.asarray(tree.n_classes)
    if (tree.node_count < 1 or tree.n_outputs < 1 or classes.shape != (tree.n_outputs,)
            or np.any(classes < 1)
            or tree.value.shape != (tree.node_count, tree.n_outputs, int(classes.max()))):
        raise _bad("decision tree", "its node count, outputs, classes and value array do not "
                                    "agree")
    # decision_path sizes its output by max_depth and writes one entry per node on a path
    if tree.max_depth != _depth(tree, left, right, leaf):
        raise _bad("decision tree", "its max_depth is not its depth")


def _depth(tree: Any, left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    """The depth of a tree whose children point forward, after checking that its nodes form
    one tree (every node but the root the child of exactly one node), from scikit-learn's
    own compiled pass over the nodes (its root has depth 1)."""
    n = len(left)
    inner = np.flatnonzero(~leaf)
    children = np.concatenate([left[inner], right[inner]]).astype(np.intp)
    if len(children) != n - 1 or np.any(np.bincount(children, minlength=n) != (
            np.arange(n) != 0)):  # (children are in range: _check_children)
        raise _bad("decision tree", "its nodes do not form one tree")
    return int(tree.compute_node_depths().max()) - 1


def check_predictor(pred: Any, n_features: int | None) -> None:
    """Bounds of a HistGradientBoosting ``TreePredictor``."""
    nodes = pred.nodes
    leaf = nodes["is_leaf"].astype(bool)
    _check_children(nodes["left"], nodes["right"], leaf, "histogram gradient boosting tree")
    inner = nodes[~leaf]
    limit = np.iinfo(np.int64).max if n_features is None else n_features
    if np.any((inner["feature_idx"] < 0) | (inner["feature_idx"] >= limit)):
        raise _bad("histogram gradient boosting tree", "a feature index is out of range")
    cat = inner[inner["is_categorical"].astype(bool)]
    for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        if len(cat) and np.any(cat["bitset_idx"] >= len(getattr(pred, name))):
            raise _bad("histogram gradient boosting tree", f"a {name} index is out of range")


def check_binary_tree(tree: Any) -> None:
    """Bounds of a ``KDTree`` / ``BallTree`` (KNeighbors*), and its distance metric."""
    from sklearn.metrics._dist_metrics import DistanceMetric64
    from sklearn.neighbors._kd_tree import KDTree

    state = tree.__getstate__()
    data, idx, node_data, bounds = (np.asarray(a) for a in state[:4])
    n_levels, n_nodes = int(state[5]), int(state[6])
    n = data.shape[0]
    what = type(tree).__name__
    if idx.shape != (n,) or np.any((idx < 0) | (idx >= n)):
        raise _bad(what, "a sample index is out of range")
    if n_nodes != 2 ** n_levels - 1 or node_data.shape != (n_nodes,):
        raise _bad(what, "its node count does not match its depth")
    if bounds.ndim != 3 or bounds.shape[1:] != (n_nodes, data.shape[1]):
        raise _bad(what, "its node bounds have the wrong shape")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if np.any((start < 0) | (start > end) | (end > n)):
        raise _bad(what, "a node's sample range is out of range")
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if np.any(2 * inner + 2 >= n_nodes):
        raise _bad(what, "an inner node has no children")
    weights = state[12] if len(state) > 12 else None
    if weights is not None and np.asarray(weights).shape != (n,):
        raise _bad(what, "its sample weights do not match its data")
    metric = state[11] if len(state) > 11 else None
    if not isinstance(metric, DistanceMetric64):  # compiled code calls it unchecked: a null
        # one crashed the process (a metric a caller's trust= admits is theirs to vouch for)
        raise _bad(what, f"its distance metric is a {type(metric).__name__}, not a "
                         "64-bit scikit-learn distance metric")
    check_metric(metric, data.shape[1], weighted=not isinstance(tree, KDTree))


def check_metric(metric: Any, width: int | None, weighted: bool = True) -> None:
    """A haversine metric measures two columns of the data it is given (``width``), which
    compiled code reads unchecked. A Minkowski metric's exponent is a positive number, as its
    constructor takes, and its weights are none, or (where ``weighted``) one per column of the
    data it measures, finite and not negative: compiled code reads one weight per column
    unchecked (a metric outside a tree, whose width is unknown, may have none; a KDTree's
    bounds ignore weights, and scikit-learn builds none with them)."""
    from sklearn.metrics._dist_metrics import (
        HaversineDistance32,
        HaversineDistance64,
        MinkowskiDistance32,
        MinkowskiDistance64,
    )

    if isinstance(metric, (HaversineDistance64, HaversineDistance32)):
        if width not in (None, 2):  # it reads a latitude and a longitude, unchecked
            raise _bad("haversine distance", f"it measures 2 columns, not {width}")
        return
    if not isinstance(metric, (MinkowskiDistance64, MinkowskiDistance32)):
        return
    p, weights = metric.__getstate__()[:2]
    if not (isinstance(p, (float, int)) and 0 < p < np.inf):
        raise _bad("Minkowski distance", f"its exponent p={p!r} is not a positive number")
    weights = np.asarray(weights)
    if weights.ndim != 1 or (weights.size and (weights.size != width or not weighted)):
        what = (f"the {width} columns it measures" if width is not None and weighted
                else "the unweighted metric it must be here")
        raise _bad("Minkowski distance", f"its {weights.size} weights do not match {what}")
    if weights.size and not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise _bad("Minkowski distance", "a weight is negative or not finite")


def check_spline(spline: Any) -> None:
    """A scipy ``BSpline`` rebuilt from its state (not its constructor) is one its constructor
    accepts: knots, coefficients and degree agree (compiled evaluation trusts them)."""
    from scipy.interpolate import BSpline

    try:
        t, c, k = spline.t, spline.c, spline.k
        if not (isinstance(t, np.ndarray) and isinstance(c, np.ndarray)
                and type(k) in (int, np.int64) and spline.extrapolate in (True, False,
                                                                          "periodic")):
            raise ValueError("bad attribute types")
        BSpline(t, c, int(k), extrapolate=spline.extrapolate)
        if c.shape[0] < len(t) - int(k) - 1:
            raise ValueError("too few coefficients")
    except (AttributeError, ValueError, TypeError) as exc:
        raise _bad("B-spline", str(exc)) from None


def _count(value: Any) -> int | None:
    """``value`` when it is a plain non-negative integer (not a bool), else ``None``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def _width(obj: Any) -> int | None:
    """``obj.n_features_in_`` when it is a plain non-negative integer, else ``None``."""
    return _count(getattr(obj, "n_features_in_", None))


def _bagged_widths(obj: Any, width: int, members: list[Any]) -> list[int]:
    """How many columns each member of a bagging ensemble sees: its stored column subset."""
    subsets = getattr(obj, "estimators_features_", None)
    if not isinstance(subsets, list) or len(subsets) != len(members):
        raise _bad("bagging ensemble", "its column subsets do not match its estimators")
    for cols in subsets:
        if (not isinstance(cols, np.ndarray) or cols.ndim != 1 or cols.dtype.kind not in "iu"
                or len(cols) > width or np.any((cols < 0) | (cols >= width))):
            raise _bad("bagging ensemble", "a column subset is out of range")
    return [len(cols) for cols in subsets]


def _ensemble_members(obj: Any) -> list[tuple[Any, int]]:
    """The sub-estimators of a fitted ensemble, each with the number of columns it is given.

    Forests and gradient boosting call their trees with ``check_input=False`` (gradient boosting
    checks ``X`` against its first tree only), isolation forests too on their stored column
    subsets, and bagging hands each estimator its column subset: a member that claims another
    width than the one it is given would read past ``X``. So the ensemble's ``n_features_in_``
    must be an integer, and each member's (and its tree's) must equal the width it is given.
    A ``Pipeline`` is not such an ensemble: its steps may legitimately see other widths.
    """
    from sklearn.ensemble import BaseEnsemble
    from sklearn.ensemble._bagging import BaseBagging
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )

    fitted = vars(obj).get("estimators_", vars(obj).get("_predictors"))
    kinds = (BaseForest, BaseGradientBoosting, BaseBagging, BaseHistGradientBoosting)
    if fitted is None or not isinstance(obj, kinds):
        return []
    what = type(obj).__name__
    width = _width(obj)
    if width is None:
        raise _bad(what, "its n_features_in_ is missing or not an integer")
    if not isinstance(obj, BaseEnsemble):  # HistGradientBoosting: predictors get its width
        return []
    if isinstance(obj, BaseGradientBoosting):
        _check_boosting_stages(obj, fitted)
    if isinstance(fitted, np.ndarray) and fitted.dtype.hasobject:
        members = list(fitted.ravel())
    elif isinstance(fitted, list):
        members = list(fitted)
    else:
        raise _bad(what, "its estimators_ is not a list of estimators")
    widths = (_bagged_widths(obj, width, members) if isinstance(obj, BaseBagging)
              else [width] * len(members))
    for member, seen in zip(members, widths, strict=True):
        own = getattr(member, "n_features_in_", None)
        tree = getattr(member, "tree_", None)
        if (own is not None and _width(member) != seen) or (
                tree is not None and getattr(tree, "n_features", None) != seen):
            raise _bad(what, f"an estimator claims another number of features than the "
                             f"{seen} it is given")
    return list(zip(members, widths, strict=True))


def _check_boosting_stages(obj: Any, fitted: Any) -> None:
    """Gradient boosting's compiled predict writes column ``k`` of an output with
    ``n_trees_per_iteration_`` columns for each tree ``k`` of a stage, and reads one value
    per leaf: the stages must be a 2-D array with that many trees each (a file with 64 per
    stage and one column corrupted the heap), one per class beyond two, and each tree must
    hold one output of one value."""
    from sklearn.base import is_classifier

    what = type(obj).__name__
    k = _count(getattr(obj, "n_trees_per_iteration_", None))
    if not (k and isinstance(fitted, np.ndarray) and fitted.ndim == 2
            and fitted.shape[1] == k):
        raise _bad(what, "its stages do not hold n_trees_per_iteration_ trees each")
    if is_classifier(obj):
        classes = _count(getattr(obj, "n_classes_", None))
        if not (classes is not None and classes >= 2
                and k == (1 if classes == 2 else classes)):
            raise _bad(what, "its trees per stage do not match its classes")
    for member in fitted.ravel():
        tree = getattr(member, "tree_", None)
        if tree is not None and (tree.n_outputs != 1 or tree.max_n_classes != 1):
            raise _bad(what, "a stage's tree does not hold one value per node")


def _check_bin_mapper(obj: Any) -> None:
    """HistGradientBoosting's compiled predict looks a categorical split's feature up in an
    array as long as the features its bin mapper marks categorical, without bounds checks:
    the mapper must describe every feature, and each categorical split must be on a feature
    it marks categorical (a shortened mapper gave predictions read from other memory)."""
    mapper, width = getattr(obj, "_bin_mapper", None), _width(obj)
    predictors = getattr(obj, "_predictors", None)
    if mapper is None or predictors is None:
        return
    what = type(obj).__name__
    marked = getattr(mapper, "is_categorical_", None)
    thresholds = getattr(mapper, "bin_thresholds_", None)
    if width is None or not isinstance(thresholds, list) or len(thresholds) != width or (
            marked is not None and not (isinstance(marked, np.ndarray)
                                        and marked.dtype.kind in "bu"
                                        and marked.shape == (width,))):
        raise _bad(what, "its bin mapper does not describe each of its features")
    if not (isinstance(predictors, list) and all(isinstance(stage, list) for stage in predictors)):
        raise _bad(what, "its predictors are not a list of stages")
    for pred in (p for stage in predictors for p in stage):
        nodes = getattr(pred, "nodes", None)
        if nodes is None:
            continue
        split = nodes[(nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0)]
        features = split["feature_idx"]
        if len(split) and (marked is None or np.any((features < 0) | (features >= width))
                           or not marked[features].all()):
            raise _bad(what, "a categorical split is on a feature not marked categorical")


def _check_glm(obj: Any) -> None:
    """scikit-learn's compiled multinomial loss reads a model's raw predictions at the column
    of each target's class without bounds checks: a generalized linear model, whose targets
    are the caller's numbers, must predict one number per row (one coefficient per feature,
    one intercept), which that loss refuses (a Poisson regressor holding one and three
    columns of coefficients crashed the process at ``score``)."""
    coef, intercept = vars(obj).get("coef_"), vars(obj).get("intercept_", 0.0)
    if coef is not None and not (isinstance(coef, np.ndarray) and coef.ndim == 1
                                 and np.ndim(intercept) == 0):
        raise _bad(type(obj).__name__, "its coefficients do not make one prediction per row")


def _check_boosting_loss(obj: Any, multinomial_type: type) -> None:
    """A boosting model's loss, fitted or given as its ``loss`` parameter (which continued
    training uses), is multinomial, by its compiled part (``multinomial_type``) and its class
    alike, exactly when the model predicts several columns, one per class: the compiled loss
    reads and writes them by class without bounds checks (a 2-class loss on a 16-class
    model corrupted the heap at ``fit``; one whose own state said it was not multinomial, at
    ``predict_proba``)."""
    columns = _count(vars(obj).get("n_trees_per_iteration_"))
    classes = vars(obj).get("classes_")
    for name in ("_loss", "loss"):
        loss = vars(obj).get(name)
        if loss is None or not hasattr(loss, "closs"):
            continue
        multinomial = isinstance(loss.closs, multinomial_type)
        fits = "is_multiclass" not in vars(loss) and multinomial == bool(
            type(loss).is_multiclass)
        if fits and columns is not None:
            fits = multinomial == (columns > 1)
            if fits and multinomial:
                fits = _count(getattr(loss, "n_classes", None)) == columns and (
                    classes is None or len(classes) == columns)
        if not fits:
            raise _bad(type(obj).__name__, f"its loss ({type(loss).__name__}) does not fit "
                       "the predictions it makes")


def _check_initial_predictions(obj: Any) -> None:
    """Gradient boosting's compiled ``predict`` writes one column per tree of a stage into
    the array of its initial predictions (a one-class initial estimator corrupted the heap
    at ``predict_proba``). Run after everything below ``obj`` is checked: this runs its
    initial estimator."""
    columns = _count(vars(obj).get("n_trees_per_iteration_"))
    width = _width(obj)
    if vars(obj).get("init_") is None or columns is None or width is None:
        return
    try:  # what predict starts from: the initial estimator's predictions, through the loss
        start = obj._raw_predict_init(np.zeros((1, width)))
    except Exception:  # noqa: BLE001 - it fails the same way at predict, in Python
        return
    if np.shape(start) != (1, columns):
        raise _bad(type(obj).__name__, "its initial predictions do not have one column per "
                   f"tree of a stage ({np.shape(start)[-1]}, not {columns})")


def check_loaded(value: Any) -> None:
    """Check every index-holding object reachable from a loaded estimator."""
    from scipy.interpolate import BSpline
    from sklearn._loss._loss import CyHalfMultinomialLoss
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.linear_model._glm.glm import _GeneralizedLinearRegressor
    from sklearn.neighbors._ball_tree import BallTree
    from sklearn.neighbors._kd_tree import KDTree
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    boosting: list[Any] = []
    stack: list[tuple[Any, int | None]] = [(value, None)]
    while stack:
        obj, n_features = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree):
            check_tree(obj, n_features)
        elif isinstance(obj, TreePredictor):
            check_predictor(obj, n_features)
        elif isinstance(obj, (KDTree, BallTree)):
            check_binary_tree(obj)
        elif isinstance(obj, BSpline):
            check_spline(obj)
        elif type(obj).__module__ == _METRICS:
            check_metric(obj, None)  # in a tree, check_binary_tree checks it with its width
        elif isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                stack.extend((item, n_features) for item in obj.ravel())
        elif isinstance(obj, (list, tuple)):
            stack.extend((item, n_features) for item in obj)
        elif isinstance(obj, dict):
            stack.extend((item, n_features) for item in obj.values())
        elif hasattr(obj, "__dict__"):
            tree = vars(obj).get("tree_")
            if isinstance(tree, Tree) and _width(obj) != tree.n_features:
                # predict checks X against n_features_in_ (not at all when it is missing)
                raise _bad("decision tree", "its n_features_in_ does not match its tree")
            if isinstance(obj, _GeneralizedLinearRegressor):
                _check_glm(obj)
            elif isinstance(obj, (BaseHistGradientBoosting, BaseGradientBoosting)):
                if isinstance(obj, BaseHistGradientBoosting):
                    _check_bin_mapper(obj)
                else:
                    boosting.append(obj)  # its initial predictions: after the walk
                _check_boosting_loss(obj, CyHalfMultinomialLoss)
            own = _width(obj)
            inner = own if own is not None else n_features
            stack.extend((item, inner) for item in vars(obj).values())
            # pushed last so visited first: a member is checked with the width it is given
            stack.extend(_ensemble_members(obj))
    for obj in boosting:  # everything checked: their initial estimators may run
        _check_initial_predictions(obj)
