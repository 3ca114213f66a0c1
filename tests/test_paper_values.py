"""The MVAE paper's published tables ship with the package and read back as printed."""

import pytest

from mvae_cli.paper import paper_tables, paper_value


def test_table1_holds_the_inference_network_counts_of_the_paper():
    mnist = {m: paper_value("1", "inference_parameters", m, "mnist") for m in ("vae", "cvae", "bivcca", "jmvae", "mvae")}
    assert mnist == {"vae": 730_240, "cvae": 735_360, "bivcca": 1_063_680, "jmvae": 2_061_184, "mvae": 1_063_680}
    counts = paper_tables()["tables"]["1"]["figures"]["inference_parameters"]
    assert counts["mvae"] == counts["bivcca"]  # the paper notes they share the architecture
    assert counts["mvae19"]["celeba"] == 10_857_048 and counts["cvae"]["multimnist"] is None


@pytest.mark.parametrize("table, figure, model, dataset, value", [
    ("2", "log_px", "mvae", "mnist", -90.619),
    ("2", "log_px", "vae", "binary-mnist", -86.313),
    ("2", "log_px_given_y", "cvae", "celeba", -6228.771),
    ("3", "log_pxy", "jmvae", "fashion-mnist", -232.700),
    ("4", "var_px", "bivcca", "multimnist", 185.709),
    ("5", "var_px_given_y", "mvae", "mnist", 27.652),
    ("3", "log_px", "vae", "mnist", None),  # VAE has no q(z|x,y): not in Table 3
    ("2", "log_pxy", "mvae19", "mnist", None),  # a dash
])
def test_values_read_back_as_printed(table, figure, model, dataset, value):
    assert paper_value(table, figure, model, dataset) == value


def test_every_table_names_its_columns_and_the_citation():
    tables = paper_tables()
    assert "Wu and Noah Goodman" in tables["citation"]
    for table in tables["tables"].values():
        for rows in table["figures"].values():
            assert all(set(row) == set(tables["columns"]) for row in rows.values())
