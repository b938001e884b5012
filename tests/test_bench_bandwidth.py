"""fastcnn.bench.bandwidth: the out-of-cache bandwidth table of the bandwidth-bound ops against a
copy of the same bytes (a tiny run: 1 MiB inputs, one round)."""

from __future__ import annotations

import pytest

from fastcnn.bench import bandwidth


def test_every_case_runs_and_is_compared_with_the_copy() -> None:
    names = [c[0] for c in bandwidth.make_cases(1)]
    assert len(names) == len(set(names))
    for op in ("relu", "gelu_none", "gelu_tanh", "bn_8x8", "bn_16x16", "avg3x3s1p1", "max2x2s2"):
        assert any(n.startswith(op + ".") for n in names), op
    rows = bandwidth.run([1], 1, 1)
    assert [r["op"] for r in rows] == names
    for r in rows:
        assert r["threads"] == 1
        assert r["gbs_cpu"] > 0 and r["copy_cpu"] > 0
        assert r["pct_cpu"] == pytest.approx(100 * r["gbs_cpu"] / r["copy_cpu"])


def test_filter_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    bandwidth.main(["--threads", "1", "--mib", "1", "--repeat", "1", "--filter", "relu.*"])
    out = capsys.readouterr().out
    assert "| relu.fwd_out | 1 |" in out and "| relu.bwd_out | 1 |" in out
    assert "gelu" not in out and "copy (1 thread(s))" in out
