"""tests/conftest.py's `unavailable`: what a test needs is missing, so it skips, except under
ALPR_TESTS_REQUIRE_ALL=1 (CI), where it fails, in a test, a fixture or at a module's import; and the
variable is kept from `alpr`, which refuses ALPR_ variables that are no setting."""

from __future__ import annotations

import pytest

from common.config import Settings
from common.errors import ConfigError
from tests.conftest import REQUIRE_ALL, TEST_ENV, unavailable

pytest_plugins = ("pytester",)

MODULE_NEEDING_A_PACKAGE = """
from tests.conftest import unavailable

try:
    import no_such_package_for_alpr  # noqa: F401
except ImportError:
    unavailable("no_such_package_for_alpr is not installed")


def test_never_reached():
    pass
"""

FIXTURE_NEEDING_A_SERVER = """
import pytest

from tests.conftest import unavailable


@pytest.fixture()
def server():
    unavailable("no server on port 1")


def test_with_the_server(server):
    pass


def test_without_it():
    pass
"""


def require_all(monkeypatch, value: str | None) -> None:
    """As if the tests had started with ALPR_TESTS_REQUIRE_ALL=value (None: unset)."""
    if value is None:
        monkeypatch.delitem(TEST_ENV, REQUIRE_ALL, raising=False)
    else:
        monkeypatch.setitem(TEST_ENV, REQUIRE_ALL, value)


def test_unavailable_fails_under_require_all(monkeypatch):
    require_all(monkeypatch, "1")
    with pytest.raises(pytest.fail.Exception, match=r"^no Redis \(ALPR_TESTS_REQUIRE_ALL is set\)$"):
        unavailable("no Redis")


@pytest.mark.parametrize("value", [None, "0", "", "true"])
def test_unavailable_skips_otherwise(monkeypatch, value):
    require_all(monkeypatch, value)
    with pytest.raises(pytest.skip.Exception, match=r"^no Redis$") as caught:
        unavailable("no Redis")
    assert caught.value.allow_module_level  # a module may call it at import


@pytest.mark.parametrize("required", [True, False])
def test_a_missing_package_or_server_fails_a_run_only_under_require_all(pytester, monkeypatch, required):
    require_all(monkeypatch, "1" if required else None)
    pytester.makepyfile(test_package=MODULE_NEEDING_A_PACKAGE, test_server=FIXTURE_NEEDING_A_SERVER)

    package = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "test_package.py")
    server = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", "test_server.py")
    if required:
        package.assert_outcomes(errors=1)  # a collection error, which stops the run
        package.stdout.fnmatch_lines(["*no_such_package_for_alpr is not installed (ALPR_TESTS_REQUIRE_ALL is set)*"])
        assert package.ret == pytest.ExitCode.INTERRUPTED
        server.assert_outcomes(passed=1, errors=1)
        server.stdout.fnmatch_lines(["*no server on port 1 (ALPR_TESTS_REQUIRE_ALL is set)*"])
        assert server.ret == pytest.ExitCode.TESTS_FAILED
    else:
        package.assert_outcomes(skipped=1)
        package.stdout.fnmatch_lines(["SKIPPED*no_such_package_for_alpr is not installed"])
        server.assert_outcomes(passed=1, skipped=1)
        server.stdout.fnmatch_lines(["SKIPPED*no server on port 1"])
        assert package.ret == pytest.ExitCode.NO_TESTS_COLLECTED and server.ret == pytest.ExitCode.OK


def test_alpr_ignores_the_tests_variables_but_still_refuses_an_unknown_one(monkeypatch):
    """CI exports ALPR_TESTS_REQUIRE_ALL before `make test` runs `alpr setup`: no setting, yet no error."""
    monkeypatch.setenv(REQUIRE_ALL, "1")
    monkeypatch.setenv("ALPR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert Settings.load().ocr_region  # loads
    monkeypatch.setenv("ALPR_TESTS_REQUIRE_AL", "1")  # positive control: a misspelt one is refused
    with pytest.raises(ConfigError, match="unknown setting ALPR_TESTS_REQUIRE_AL"):
        Settings.load()
