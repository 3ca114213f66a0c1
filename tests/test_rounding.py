"""Numbers rounded to their standard error; exact figures without ±."""

import math

import pytest

from mvae_cli.tables.rounding import binomial_se, error_decimals, estimate, exact, interval, is_exact, plain, rounded


@pytest.mark.parametrize("error, decimals", [(0.012, 3), (0.05, 2), (0.0299, 3), (0.3, 1), (4.56, 0), (2.5, 1),
                                             (34.0, -1), (150.0, -1), (0.0005, 4)])
def test_an_error_keeps_one_digit_or_two_when_it_starts_with_1_or_2(error, decimals):
    assert error_decimals(error) == decimals


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, None])
def test_no_error_no_place(bad):
    assert error_decimals(bad) is None


def test_the_mean_is_printed_to_the_place_its_error_reaches():
    assert estimate(0.41237, 0.01563) == "0.412 ± 0.016"
    assert estimate(-957.19, 6.49) == "-957 ± 6"
    assert estimate(-1016.23, 0.45) == "-1016.2 ± 0.5"
    assert estimate(-957.19, 34.0) == "-960 ± 30"
    assert estimate(0.7016, math.nan) == "0.7016"  # unknown error: four significant digits
    assert estimate(0.368, 0.0) == "0.368"  # no spread at all: exact
    assert rounded(0.41237, 0.01563) == "0.412"
    assert estimate(math.nan, 0.1) == "–"


def test_an_interval_is_rounded_to_the_standard_error_not_to_its_width():
    # n = 3 seeds: the 95% half-width is 4.3 standard errors
    assert interval(0.4123, 0.0173, 0.0746) == "0.412 ± 0.075"
    assert interval(0.4123, math.nan, 0.07) == "0.4123"


def test_exact_figures_have_no_plus_minus():
    assert exact(0.368) == "0.368" and exact(1.0) == "1.000" and exact(1234.5) == "1234"
    assert "±" not in exact(0.3675)
    assert is_exact(1.689e-16, 0.368) and not is_exact(0.01, 0.368) and not is_exact(math.nan, 0.368)


def test_the_error_of_a_share_is_binomial_and_never_zero():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(1.0, 2000) == pytest.approx(1 / 2000)  # one trial in n: the share's resolution
    assert math.isnan(binomial_se(0.5, 0))


def test_plain_numbers_keep_thousands_whole():
    assert plain(1364843.2) == "1364843" and plain(8.377, 3) == "8.38" and plain(None) == "–"
