"""The login benchmark runs end to end: every phase's requests succeed (no figures asserted)."""

from __future__ import annotations

from bench import bench_login


def test_the_login_bench_runs_the_login_its_floor_and_bare_requests(capsys):
    result = bench_login.run(logins=2, bare=4)
    phases = [result.bare, *result.logins.values(), *result.floors.values()]
    assert [phase.errors for phase in phases] == [[] for _ in phases]
    assert result.bare.operations == bench_login.CLIENTS * 4
    assert sorted(result.logins) == sorted(result.floors) == ["P-256", "RSA-2048"]
    for phase in (*result.logins.values(), *result.floors.values()):
        assert phase.operations == bench_login.CLIENTS * 2
    bench_login.print_result(result)
    table = capsys.readouterr().out
    assert "login floor, RSA-2048" in table
    assert "(goal ≤ 4)" in table
