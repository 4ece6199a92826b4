"""The command helper: argv only, no shell, failures raised with stderr."""
import pytest

import leapfrog_cmd
import leapfrog_errors


def fake_run_all(retcode, stdout="", stderr=""):
    calls = []

    def run_all(argv, **kwargs):
        calls.append((argv, kwargs))
        return {"retcode": retcode, "stdout": stdout, "stderr": stderr}

    return run_all, calls


def test_success_passes_argv_without_shell():
    run_all, calls = fake_run_all(0, stdout="ok")
    assert leapfrog_cmd.run(run_all, ["nova-manage", "db", "version"])["stdout"] == "ok"
    argv, kwargs = calls[0]
    assert argv == ["nova-manage", "db", "version"]
    assert kwargs["python_shell"] is False


def test_failure_carries_stderr_tail():
    stderr = "\n".join(f"line {i}" for i in range(50))
    run_all, _ = fake_run_all(2, stderr=stderr)
    with pytest.raises(leapfrog_errors.CommandFailed) as info:
        leapfrog_cmd.run(run_all, ["nova-manage", "db", "sync"])
    text = str(info.value)
    assert text.startswith("nova-manage exited 2: line 30")
    assert "line 49" in text and "line 29" not in text


def test_stdin_secret_is_not_logged():
    run_all, calls = fake_run_all(0)
    leapfrog_cmd.run(run_all, ["mysql"], stdin="password=s3cret")
    assert calls[0][1]["output_loglevel"] == "quiet"
    assert "s3cret" not in " ".join(calls[0][0])


def test_refuses_a_shell_string():
    run_all, calls = fake_run_all(0)
    with pytest.raises(leapfrog_errors.LeapfrogError):
        leapfrog_cmd.run(run_all, "nova-manage db sync; rm -rf /")
    assert calls == []
