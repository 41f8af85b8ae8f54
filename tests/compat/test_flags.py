"""Every IRSHIM_* value is validated: a malformed one names the variable, the value and what is accepted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import irshim.compat as compat
from irshim.compat import ConfigError, flags

BAD = [
    ("IRSHIM_DISPATCH", "maybe"), ("IRSHIM_DISPATCH", "shadows"),
    ("IRSHIM_OPS", "all,none"), ("IRSHIM_OPS", "+rms_norm,all"), ("IRSHIM_OPS", "rms_norm"),
    ("IRSHIM_OPS", "none,+rms_norm,-rms_norm"), ("IRSHIM_OPS", "none,,+x"), ("IRSHIM_OPS", "none,+RMS"),
    ("IRSHIM_PRIORITY", "rms_norm"), ("IRSHIM_PRIORITY", "rms_norm=triton,triton"),
    ("IRSHIM_SHADOW_SAMPLE", "0"), ("IRSHIM_SHADOW_SAMPLE", "1.5"), ("IRSHIM_SHADOW_SAMPLE", "-0.1"),
    ("IRSHIM_SHADOW_SAMPLE", "abc"), ("IRSHIM_SHADOW_SAMPLE", "nan"),
    ("IRSHIM_REPORT_DIR", "  "), ("IRSHIM_STRICT", "2"), ("IRSHIM_STRICT", "maybe"),
    ("IRSHIM_RUN_ID", "../escape"), ("IRSHIM_RUN_ID", "a b"),
]


@pytest.mark.parametrize("variable, value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_malformed_values_raise_a_clear_error(variable, value):
    with pytest.raises(ConfigError) as info:
        flags.from_env({variable: value})
    message = str(info.value)
    assert message.startswith(f"{variable}={value!r} is invalid") and "Accepted:" in message


def test_defaults_and_good_values():
    f = flags.from_env({})
    assert (f.dispatch, f.shadow_sample, f.strict, f.report_dir) == ("off", 1.0, False, "migration_reports")
    f = flags.from_env({"IRSHIM_DISPATCH": "Shadow", "IRSHIM_OPS": "none,+rms_norm", "IRSHIM_SHADOW_SAMPLE": "0.01",
                        "IRSHIM_STRICT": "1", "IRSHIM_PRIORITY": "rms_norm=native", "IRSHIM_RUN_ID": "run-1.a"})
    assert f.mode_for("rms_norm") == "shadow" and f.mode_for("silu_and_mul") == "off"
    assert f.shadow_sample == 0.01 and f.strict
    assert flags.from_env({"IRSHIM_DISPATCH": "on", "IRSHIM_OPS": "all,-rms_norm"}).mode_for("rms_norm") == "off"
    assert flags.from_env({"IRSHIM_DISPATCH": "on", "IRSHIM_OPS": "-rms_norm"}).mode_for("relu2") == "on"
    assert flags.from_env({"IRSHIM_DISPATCH": "on", "IRSHIM_OPS": "+rms_norm"}).mode_for("relu2") == "off"


def test_override_restores_on_exception_and_validates():
    before = flags.current()
    with pytest.raises(ConfigError, match="IRSHIM_DISPATCH"):
        with compat.override(dispatch="sideways"):
            pass
    with pytest.raises(KeyError):
        with compat.override(dispatch="on", priority="rms_norm=native"):
            assert flags.current().dispatch == "on" and os.environ["IRSHIM_PRIORITY"] == "rms_norm=native"
            raise KeyError("boom")
    assert flags.current() == before and "rms_norm=native" != os.environ.get("IRSHIM_PRIORITY")


@pytest.mark.parametrize("start", ["from irshim.compat import CustomOp", "import irshim.compat.layers",
                                   "import irshim.compat as c; c.install"])
def test_malformed_environment_stops_start_up(start):
    # Model code starts up by importing layers or the base: that is where it stops.
    env = dict(os.environ, IRSHIM_SHADOW_SAMPLE="2")
    proc = subprocess.run([sys.executable, "-c", start], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "IRSHIM_SHADOW_SAMPLE='2' is invalid" in proc.stderr and "0 < p <= 1" in proc.stderr


def test_the_command_reports_a_malformed_setting_without_a_traceback():
    env = dict(os.environ, IRSHIM_DISPATCH="bogus")
    proc = subprocess.run([sys.executable, "-m", "irshim.compat.cli", "status"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("irshim status: IRSHIM_DISPATCH='bogus' is invalid")
