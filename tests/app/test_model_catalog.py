"""The "start a swarm" model list: sizes at each precision, the fit line, another model sized by the engine."""

from __future__ import annotations

import pytest

from potluck.app import model_catalog
from potluck.app.model_catalog import ANOTHER, ModelCatalog, catalog_rows, size_cells
from potluck.core.model.builtin import BUILTIN
from potluck.core.model.catalog import CATALOG, ModelSize
from potluck.core.numbers import GIB

FREE = 14 * GIB


def make(qtbot, builtin_installed=True, free=FREE):
    catalog = ModelCatalog(builtin_installed=builtin_installed, free_bytes=lambda: free)
    qtbot.addWidget(catalog)
    return catalog


@pytest.mark.parametrize("installed, first, count", [
    (True, BUILTIN, len(CATALOG) + 1),
    (False, "meta-llama/Llama-3.1-8B-Instruct", len(CATALOG)),  # no built-in row where it is not installed
])
def test_rows_list_the_short_list_then_another(installed, first, count):
    rows = catalog_rows(installed)
    assert rows[0].model == first and len(rows) == count
    assert (rows[-1].model, rows[-1].label, rows[-1].size) == ("", ANOTHER, None)


@pytest.mark.parametrize("size, cells", [
    (None, ["", "", "", ""]),
    (ModelSize("m", 80, {"none": 136 * GIB, "int8": 72 * GIB, "int4": 40 * GIB}, "bfloat16"),
     ["80", "136 GiB", "72.0 GiB", "40.0 GiB"]),
])
def test_size_cells(size, cells):
    assert size_cells(size) == cells


def test_the_fit_line_follows_the_row_and_the_precision(qtbot):
    catalog = make(qtbot)
    catalog.select_model("meta-llama/Llama-3.1-70B-Instruct")
    assert catalog.model() == "meta-llama/Llama-3.1-70B-Instruct" and catalog.quant() == "none"
    assert catalog.fit_label.text() == ("At full precision it needs about 128 GiB; this PC has 14.0 GiB free: "
                                        "about 11 PCs like this one.")
    catalog.precision.setCurrentIndex(catalog.precision.findData("int4"))
    assert catalog.quant() == "int4"
    assert catalog.fit_label.text() == ("At int4 it needs about 39.8 GiB; this PC has 14.0 GiB free: "
                                        "about 4 PCs like this one.")
    assert not catalog.picker.isVisibleTo(catalog) and catalog.problem() == ""


def test_another_model_is_sized_once_typing_pauses(qtbot, fake_sizer):
    catalog = make(qtbot)
    catalog.select_model("org/some-model")
    assert catalog.is_other() and catalog.picker.isVisibleTo(catalog)
    assert catalog.fit_label.text() == "Working out its size…" and fake_sizer.calls == []
    qtbot.waitUntil(lambda: "PCs like this one" in catalog.fit_label.text(), timeout=5_000)
    assert fake_sizer.calls == ["org/some-model"]  # once, after the pause
    assert catalog.table.item(len(catalog.rows) - 1, 2).text() == "64.0 GiB"
    assert catalog.model() == "org/some-model" and catalog.problem() == ""


def test_an_unsupported_model_is_refused_with_the_supported_list(qtbot, fake_sizer):
    catalog = make(qtbot)
    catalog.select_model("org/unsupported-model")
    qtbot.waitUntil(lambda: catalog.problem() != "", timeout=5_000)
    assert catalog.problem().startswith("Model type 'bert' is not supported yet (supported: llama")
    assert "Cannot size that model" in catalog.fit_label.text()
    catalog.picker.set_text("org/fine-model")  # typing on clears the refusal at once
    assert catalog.problem() == ""


def test_a_typo_is_not_sent_to_the_engine(qtbot, fake_sizer):
    catalog = make(qtbot)
    catalog.select_model("not a model")
    qtbot.wait(1_000)
    assert fake_sizer.calls == [] and "org/model-name" in catalog.problem()


@pytest.mark.slow
def test_the_engine_sizes_a_folder_and_refuses_an_unsupported_one(tmp_path):
    """The real `potluck models --model … --json` in a separate process, as the page runs it."""
    from potluck.core.model.tiny import make_tiny_model

    folder = make_tiny_model("qwen3_moe", tmp_path / "tiny-moe", layers=2, hidden=64, seed=1)
    size = REAL_SIZER(str(folder))
    assert size.num_blocks == 2
    assert size.num_blocks > 0 and size.blocks_bytes["int4"] < size.blocks_bytes["int8"] < size.blocks_bytes["none"]
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    with pytest.raises(RuntimeError, match="model type 'bert' is not supported yet"):
        REAL_SIZER(str(bert))


REAL_SIZER = model_catalog.size_from_engine  # taken at import, before the autouse fixture replaces it
