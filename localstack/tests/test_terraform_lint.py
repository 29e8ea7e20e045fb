"""checkov on terraform/: no unsuppressed failure, and every suppression is a
`#checkov:skip=CKV_...:reason` comment in its resource, with its reason, that still
suppresses something.

checkov is pinned in cloudformation/requirements-lint.txt (with cfn-lint) and lives in a
venv of its own, cloudformation/.venv (it pins old boto3 and networkx, so not the kit's);
$CHECKOV names another binary. No kit needed.
"""

import glob
import json
import os
import re
import subprocess
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(REPO, "terraform")
PINS = os.path.join(REPO, "cloudformation", "requirements-lint.txt")
CHECKOV = os.environ.get("CHECKOV") or os.path.join(REPO, "cloudformation", ".venv", "bin", "checkov")
SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def pinned() -> str:
    with open(PINS, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*checkov==([0-9.]+)\s*$", line)
            if m:
                return m.group(1)
    raise AssertionError(f"{PINS} pins no exact checkov version (checkov==X.Y.Z)")


class Checkov(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CHECKOV, os.X_OK):
            raise AssertionError(
                f"checkov is not installed at {CHECKOV}: python3 -m venv cloudformation/.venv && "
                f"cloudformation/.venv/bin/pip install -r cloudformation/requirements-lint.txt")
        env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
        version = subprocess.run([CHECKOV, "--version"], capture_output=True, text=True, timeout=120, env=env,
                                 check=False)
        cls.version = version.stdout.strip().splitlines()[-1] if version.stdout.strip() else ""
        out = subprocess.run(
            [CHECKOV, "--directory", MODULE, "--framework", "terraform", "--output", "json", "--compact",
             "--skip-download", "--download-external-modules", "false"],
            capture_output=True, text=True, timeout=600, env=env, check=False)
        if not out.stdout.strip():
            raise AssertionError(f"checkov printed nothing ({out.returncode}):\n{out.stderr[-3000:]}")
        reports = json.loads(out.stdout)
        cls.reports = reports if isinstance(reports, list) else [reports]

    def test_checkov_is_the_pinned_version(self):
        self.assertEqual(self.version, pinned())

    def test_no_unsuppressed_failures(self):
        failed = sorted({(c["check_id"], c["resource"], f"{c['file_path']}:{c['file_line_range'][0]}", c["check_name"])
                         for r in self.reports for c in r["results"]["failed_checks"]})
        errors = sum(r["summary"].get("parsing_errors", 0) for r in self.reports)
        self.assertEqual(errors, 0, "checkov could not parse every file of terraform/")
        self.assertFalse(failed, "checkov failures on terraform/ (fix, or suppress in the resource with "
                                 "#checkov:skip=ID:reason):\n" + "\n".join(f"  {i} {res} ({where}): {name}"
                                                                          for i, res, where, name in failed))
        self.assertGreater(sum(r["summary"]["passed"] for r in self.reports), 0, "checkov checked nothing")

    def test_every_suppression_has_a_reason_and_is_used(self):
        skipped = {(c["check_id"], os.path.basename(c["file_path"])) for r in self.reports
                   for c in r["results"]["skipped_checks"]}
        found, problems = 0, []
        for path in sorted(glob.glob(os.path.join(MODULE, "**", "*.tf"), recursive=True)):
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    m = SKIP.search(line.strip())
                    if not m:
                        continue
                    found += 1
                    where = f"{os.path.relpath(path, REPO)}:{number}"
                    if not (m.group(2) or "").strip():
                        problems.append(f"{where}: {m.group(1)} has no reason (#checkov:skip={m.group(1)}:why)")
                    if (m.group(1), os.path.basename(path)) not in skipped:
                        problems.append(f"{where}: {m.group(1)} suppresses nothing: remove it")
        self.assertGreater(found, 0)
        self.assertFalse(problems, "\n".join(problems))


if __name__ == "__main__":
    unittest.main()
