"""The run form's link: the URL query that holds a config."""

from app.form import config_from_query, config_to_query
from core.presets import preset_config


def test_a_link_gives_back_the_very_same_config():
    config = preset_config("quick-negative-bias").replace(lr=0.010000001, eps=1 / 3, init_bias=-0.123456789,
                                                          n_neurons=300)
    query = config_to_query(config, "quick-negative-bias")
    assert query.startswith("?preset=quick-negative-bias&")
    assert config_from_query(query) == ("quick-negative-bias", config)  # no digit lost to rounding


def test_a_link_with_a_bad_value_keeps_the_valid_ones():
    preset, config = config_from_query("?preset=quick-negative-bias&n_neurons=300&eps=7&lr=1" + "0" * 400)
    assert preset == "quick-negative-bias"
    assert config == preset_config("quick-negative-bias").replace(n_neurons=300)
