"""factlearn.stats against values computed by hand (no scipy at run time)."""

import math

import numpy as np
import pytest

from factlearn import stats
from factlearn.errors import UserError


def test_wilson_five_of_ten():
    lo, hi = stats.wilson_interval(5, 10)
    # z = 1.959964: centre 0.5, half-width z*sqrt(0.025 + z^2/400)/(1 + z^2/10)
    assert lo == pytest.approx(0.236593, abs=1e-6) and hi == pytest.approx(0.763407, abs=1e-6)
    assert stats.wilson_interval(0, 10)[0] == 0.0 and stats.wilson_interval(10, 10)[1] == 1.0
    lo90, hi90 = stats.wilson_interval(5, 10, level=0.9)
    assert lo < lo90 < 0.5 < hi90 < hi


def test_mcnemar_exact_small_table():
    # discordant pairs b=1, c=6: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    assert stats.mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert stats.mcnemar_exact(6, 1) == pytest.approx(16 / 128)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0  # capped
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_binomial_tail_and_above_chance():
    # P(X >= 5), X ~ Bin(8, 1/4) = sum_{i=5..8} C(8,i) 3^(8-i) / 4^8
    expected = sum(math.comb(8, i) * 3 ** (8 - i) for i in range(5, 9)) / 4 ** 8
    assert stats.binomial_upper_tail(5, 8, 0.25) == pytest.approx(expected)
    assert stats.above_chance(5, 8, 0.25)["above"] is True  # p = 0.027 < 0.05
    assert stats.above_chance(4, 8, 0.25)["above"] is False  # p = 0.114
    assert stats.above_chance(5, 8, 0.25, level=0.99)["above"] is False
    assert stats.above_chance(0, 8, 0.25)["p_value"] == pytest.approx(1.0)


def test_t_quantile_matches_tables():
    for df, q in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)):
        assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    lo, hi = stats.t_interval([0.4, 0.6], 0.95)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - 0.5 == pytest.approx(12.7062 * 0.1 / 1.0, abs=1e-3)


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8]
    a = stats.bootstrap_mean_ci(values, seed=3)
    assert a == stats.bootstrap_mean_ci(values, seed=3)
    assert a != stats.bootstrap_mean_ci(values, seed=4)
    assert a[0] < np.mean(values) < a[1]


def test_score_interval_items_then_seeds():
    one = stats.score_interval([[1, 0] * 5])
    assert one["method"] == "wilson" and one["ci"] == pytest.approx(list(stats.wilson_interval(5, 10)))
    f1 = stats.score_interval([[0.5, 0.25, 1.0, 0.0]])
    assert f1["method"] == "bootstrap" and f1["ci"][0] < f1["mean"] < f1["ci"][1]
    seeds = stats.score_interval([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert seeds["method"].startswith("t over 2") and seeds["mean"] == pytest.approx(0.625)
    assert seeds["ci"] == [0.0, 1.0]  # t with 1 df is wide; clipped to the score's range


def test_paired_comparison_names_its_test():
    a, b = [[1, 1, 1, 1, 1, 1, 0, 1]], [[0, 0, 0, 0, 0, 1, 1, 1]]
    c = stats.paired_comparison(a, b)
    assert c["test"] == "exact McNemar" and c["p_value"] == pytest.approx(stats.mcnemar_exact(5, 1))
    assert c["diff"] == pytest.approx(0.5) and c["ci"][0] <= 0.5 <= c["ci"][1]
    two = stats.paired_comparison(a * 2, b * 2)
    assert two["test"] == "paired bootstrap" and two["n_seeds"] == 2
    real = stats.paired_comparison([[0.5, 0.7, 0.9]], [[0.1, 0.2, 0.3]])
    assert real["test"] == "paired bootstrap" and real["ci"][0] > 0 and real["p_value"] < 0.01


def test_paired_bootstrap_shares_items_between_conditions():
    # a = b + 0.2 on every item: pairing removes the items' spread, so the interval is a point
    b = [0.0, 0.3, 0.5, 0.9, 0.1]
    c = stats.paired_comparison([[x + 0.2 for x in b]], [b])
    assert c["ci"] == pytest.approx([0.2, 0.2])


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, "0.9"])
def test_levels_outside_zero_one_are_user_errors_where_a_level_enters(level):
    """Checked once, where a level comes in (the run config has its own test); the interval functions
    below take the checked value."""
    from factlearn.report.conclusions import conclude
    from factlearn.report.evidence import Evidence

    with pytest.raises(UserError, match="confidence level must be a probability strictly between 0 and 1"):
        stats.check_level(level)
    with pytest.raises(UserError, match="between 0 and 1"):
        conclude(Evidence(), level)
    assert stats.check_level(0.9) == 0.9


def test_bounded_intervals_do_not_collapse_on_agreeing_items():
    agree = stats.paired_comparison([[0, 0, 0]], [[0, 0, 0]], bounds=(0, 1))
    assert agree["ci"][0] < -0.2 and agree["ci"][1] > 0.2 and agree["p_value"] == 1.0
    many = stats.paired_comparison([[0] * 400], [[0] * 400], bounds=(0, 1))
    assert -0.02 < many["ci"][0] < 0 < many["ci"][1] < 0.02
    assert stats.bootstrap_mean_ci([0.0, 0.0, 0.0], bounds=(0, 1))[1] > 0.1
    assert stats.bootstrap_mean_ci([0.0, 0.0, 0.0]) == (0.0, 0.0)
    # three seeds that agree exactly still carry the items' uncertainty
    seeds = stats.score_interval([[0, 0, 0, 0]] * 3)
    assert seeds["ci"][0] == 0.0 and seeds["ci"][1] > 0.3


def test_p_at_least_is_the_add_one_share_of_replicates_at_or_above_the_bound():
    import numpy as np

    reps = np.array([-0.2, -0.1, 0.0, 0.04, 0.05, 0.06, 0.3, -0.05, -0.01])  # 3 of 9 at or above 0.05
    assert stats.p_at_least(reps, 0.05) == pytest.approx(4 / 10)
    assert stats.p_at_least(reps, 1.0) == pytest.approx(1 / 10)  # never 0: add-one corrected
    assert stats.p_at_least(reps, -1.0) == pytest.approx(1.0)


def test_holm_adjusted_p_values_match_a_hand_computation():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 4*0.01=0.04, max(0.04, 3*0.02=0.06)=0.06,
    # max(0.06, 2*0.03=0.06)=0.06, max(0.06, 1*0.04)=0.06; None is not a test
    adj = stats.holm_adjust([0.04, None, 0.01, 0.03, 0.02])
    assert adj[1] is None
    assert adj[2] == pytest.approx(0.04) and adj[4] == pytest.approx(0.06)
    assert adj[3] == pytest.approx(0.06) and adj[0] == pytest.approx(0.06)
    assert stats.holm_adjust([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1
    assert stats.holm_adjust([0.2]) == [pytest.approx(0.2)]


def test_cluster_bootstrap_keeps_a_facts_items_together():
    # 10 facts, each with 5 items in a task that all move together (+1 or -1): 50 "independent" items
    # to the item bootstrap, 10 independent units in truth. The cluster interval must be wider.
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=10)
    items = {f * 5 + r: float(signs[f]) for f in range(10) for r in range(5)}
    clusters = {i: f"fact{i // 5}" for i in items}
    cl = stats.cluster_bootstrap_replicates([{1: items}], [clusters], n_boot=4000, seed=1)
    it = stats.paired_bootstrap_replicates([list(items.values())], [[0.0] * 50], n_boot=4000, seed=1)
    assert np.mean(cl) == pytest.approx(np.mean(list(items.values())), abs=0.05)
    assert np.std(cl) > 1.8 * np.std(it)  # sqrt(5) in theory
    # across tasks: a fact's items in QA and in MC are drawn with the same count, so a difference
    # that is +1 in QA exactly where it is -1 in MC cancels in every replicate
    qa = {f: float(signs[f]) for f in range(10)}
    mc = {f: -float(signs[f]) for f in range(10)}
    fact_of = {f: f"fact{f}" for f in range(10)}
    both = stats.cluster_bootstrap_replicates([{1: qa}, {1: mc}], [fact_of, fact_of], n_boot=500, seed=2)
    assert np.allclose(both, 0.0)


def test_cluster_bootstrap_resamples_seeds():
    # one fact, two seeds that disagree: without seed resampling every replicate would be 0
    tasks = [{1: {0: 1.0}, 2: {0: -1.0}}]
    reps = stats.cluster_bootstrap_replicates(tasks, [{0: "f"}], n_boot=400, seed=3)
    assert set(np.round(reps, 6)) == {-1.0, 0.0, 1.0}
    assert stats.seed_directions(tasks) == {1: 1, 2: -1}
