#!/usr/bin/env python3
"""Runs the containerd end-to-end tests in a fixed order and prints one summary line per test.

    run_tests.py [NAME...]   NAME selects tests whose id contains it (e.g. basic, memory, cri)

Needs the environment scripts/e2e-containerd.sh sets up (E2E_WORK, ...); exits 1 if any failed.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import test_chaos  # noqa: E402
import test_cri  # noqa: E402
import test_ctr  # noqa: E402


class Result(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rows = []

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _row(self, test, outcome, detail=""):
        self.rows.append((test.id().split(".", 1)[-1], outcome, time.monotonic() - self._t0, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._row(test, "PASS")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._row(test, "FAIL", str(err[1]).strip().splitlines()[0] if str(err[1]).strip() else "")

    def addError(self, test, err):
        super().addError(test, err)
        self._row(test, "ERROR", f"{err[0].__name__}: {str(err[1]).strip().splitlines()[0] if str(err[1]).strip() else ''}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._row(test, "SKIP", reason)


def main():
    patterns = [a.lower() for a in sys.argv[1:]]
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for cls in test_ctr.ORDER + test_cri.ORDER + test_chaos.ORDER:
        for test in loader.loadTestsFromTestCase(cls):
            if not patterns or any(p in test.id().lower() for p in patterns):
                suite.addTest(test)
    for (name, plat), img in sorted(lib.images().items()):
        print(f"image {name} {plat} {' '.join(img.argv)} <- {os.path.relpath(img.tar, lib.WORK)}")
    runner = unittest.TextTestRunner(verbosity=2, resultclass=Result, stream=sys.stdout)
    result = runner.run(suite)
    print("\n== containerd e2e summary")
    for name, outcome, secs, detail in result.rows:
        print(f"{outcome:5} {name:45} {secs:6.1f} s  {detail[:160]}")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
