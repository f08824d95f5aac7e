"""What the CI gate writes: a human summary, JUnit XML (one test case per verdict) and JSON, all written atomically.

JUnit follows the schema CI systems read (Jenkins, GitLab's test reports, GitHub test-report actions):
<testsuites><testsuite><testcase classname name time><failure|error message type>...</testcase></testsuite>.
"""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from profiler.atomic import atomic_write_text
from profiler.gate.check import CheckResult
from profiler.latency.device_check import describe

SUITE = "fgnas-check"


def summary_lines(result: CheckResult) -> list[str]:
    lines = [f"{result.model} on {describe(result.device)}: {len(result.run.model_ms)} measurements"
             f"{' interleaved with the reference' if result.run.reference_ms else ''} in {result.run.seconds:.1f} s"]
    lines += [f"  {o.name}: {'PASS' if o.passed else 'FAIL'}: {o.message}" for o in result.outcomes]
    if result.baseline_written:
        lines.append(f"  wrote baseline {result.baseline_written}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append("PASS" if result.passed else "FAIL")
    return lines


def _suite(device_name: str, cases: int, failures: int, errors: int, seconds: float) -> tuple[ET.Element, ET.Element]:
    """The <testsuites> root and its one <testsuite>, with the counts CI systems show."""
    counts = {"tests": str(cases), "failures": str(failures), "errors": str(errors), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", name=SUITE, **counts)
    suite = ET.SubElement(root, "testsuite", name=f"{SUITE}.{device_name}", skipped="0",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), **counts)
    return root, suite


def _write_xml(root: ET.Element, path: Path) -> None:
    ET.indent(root)
    atomic_write_text(Path(path), '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n")


def junit_xml(result: CheckResult) -> ET.Element:
    cases = list(result.outcomes)
    failures = sum(not o.passed for o in cases)
    count = max(len(cases), 1)
    root, suite = _suite(result.device.get("name", "device"), count, failures, 0, result.run.seconds)
    properties = ET.SubElement(suite, "properties")
    for key in ("name", "cpu_model", "model", "runtime_version", "serial"):
        if result.device.get(key) is not None:
            ET.SubElement(properties, "property", name=f"device.{key}", value=str(result.device[key]))
    per_case = f"{result.run.seconds / count:.3f}"
    for outcome in cases:
        case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.{result.model.name}", name=outcome.name,
                             time=per_case)
        if not outcome.passed:
            kind = "OverBudget" if outcome.name == "budget" else "LatencyRegression"
            ET.SubElement(case, "failure", message=outcome.message, type=kind).text = outcome.message
        ET.SubElement(case, "system-out").text = "\n".join(summary_lines(result))
    if not cases:  # --update-baseline alone: report the recording as a passing case
        case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.{result.model.name}", name="update-baseline",
                             time=per_case)
        ET.SubElement(case, "system-out").text = "\n".join(summary_lines(result))
    return root


def write_junit(result: CheckResult, path: Path) -> None:
    _write_xml(junit_xml(result), path)


def write_junit_error(model: Path, device_name: str, error: Exception, path: Path) -> None:
    """A check that could not run (bad input, device fault) still shows up in CI, as an error."""
    root, suite = _suite(device_name, 1, 0, 1, 0.0)
    case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.{Path(model).name}", name="check", time="0.000")
    ET.SubElement(case, "error", message=str(error), type=type(error).__name__).text = str(error)
    _write_xml(root, path)


def write_json(result: CheckResult, path: Path) -> None:
    atomic_write_text(Path(path), json.dumps(result.to_dict(), indent=1) + "\n")


def write_json_error(model: Path, error: Exception, exit_code: int, path: Path) -> None:
    doc = {"status": "error", "exit_code": exit_code, "model": str(model), "error": str(error),
           "error_type": type(error).__name__}
    atomic_write_text(Path(path), json.dumps(doc, indent=1) + "\n")
