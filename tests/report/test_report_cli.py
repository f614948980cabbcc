"""``hwbench report`` renders both reports from a warehouse of real measurements, and refuses bad input with
one line."""

import pytest

from hwbench_pipeline.cli import main
from hwbench_pipeline.predict.predictor import held_out_predictions


@pytest.mark.slow
def test_report_writes_every_format_from_the_warehouse(measured_warehouse, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", "--data-dir", str(measured_warehouse), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "regression report: 6 configurations" in printed and "comparison report:" in printed
    for name in ("regression_report.md", "regression_report.html", "comparison_report.md",
                 "comparison_report.html"):
        text = (out / name).read_text()
        assert "bert/tiny" in text, name
    assert (out / "comparison_report.pdf").read_bytes().startswith(b"%PDF-")
    # predicted against measured: the predictor's leave-architecture-out predictions, saved beside it when it trained
    held_out = held_out_predictions(measured_warehouse / "predictor")
    assert held_out is not None and held_out.height > 0
    assert (held_out["value"] > 0).all() and (held_out["measured_p50_ms"] > 0).all()
    assert set(held_out["family"]) == {"bert", "llama", "vit"}  # every family predicted without itself
    assert "held out: predictor without this architecture" in (out / "comparison_report.md").read_text()


@pytest.mark.slow
def test_report_uses_a_users_template(measured_warehouse, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "regression_report.md.j2").write_text("custom: {{ n_configs }} configurations\n")
    out = tmp_path / "reports"
    assert main(["report", "--kind", "regression", "--data-dir", str(measured_warehouse), "--out", str(out),
                 "--templates", str(templates)]) == 0
    assert (out / "regression_report.md").read_text() == "custom: 6 configurations\n"
    assert not (out / "comparison_report.pdf").exists()


def test_report_refuses_an_empty_data_dir_and_bad_options(tmp_path, capsys):
    assert main(["report", "--data-dir", str(tmp_path)]) == 2
    assert "no inference results" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--min-change", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err
