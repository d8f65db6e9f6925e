"""common/csv_files.py: a CSV file written over one that was readable by all is its owner's only. That no
exported cell is a formula is tested through `alpr export` (tests/alpr/test_export.py) and `alpr eval`
(tests/alpr/test_evaluation.py)."""

from __future__ import annotations

import os
import stat

from common.csv_files import write_csv


def test_an_export_over_a_file_that_was_readable_by_all_leaves_it_its_owners(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("old")
    path.chmod(0o644)
    assert write_csv([{"a": 1}], ["a"], path) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text().splitlines() == ["a", "1"]
