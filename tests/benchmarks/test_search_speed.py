"""The import step's helpers and options in benchmarks/search_speed.py."""

import argparse
import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def search_speed(monkeypatch) -> ModuleType:
    # The script imports its sibling _django module, as when run from the benchmarks folder.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("search_speed")


def test_sample_takes_every_fifth_of_5000(search_speed):
    sample = search_speed.spread_sample(list(range(5_000)), 1_000)

    assert sample == list(range(0, 5_000, 5))


def test_sample_spans_uneven_import(search_speed):
    sample = search_speed.spread_sample(list(range(5_999)), 1_000)

    assert len(sample) == 1_000
    assert sample[:3] == [0, 5, 11]
    assert sample[-1] == 5_993


def test_sample_of_small_import_is_all(search_speed):
    assert search_speed.spread_sample(list(range(700)), 1_000) == list(range(700))


@pytest.mark.parametrize(
    "option", ["--import-rounds=0", "--import-rounds=-1", "--import-products=0"]
)
def test_import_options_reject_counts_below_one(search_speed, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        search_speed.parse_args(["data", "--vector-cache", "v.npy", option])

    assert exit_info.value.code == 2
    assert f"argument {option.split('=')[0]}: must be 1 or more" in capsys.readouterr().err


def test_import_larger_than_main_tenant_rejected(search_speed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        search_speed.parse_args(
            ["data", "--vector-cache", "v.npy", "--products=100", "--import-products=101"]
        )

    assert exit_info.value.code == 2
    assert "--import-products 101 is more than --products 100" in capsys.readouterr().err


def test_import_options_default(search_speed):
    args = search_speed.parse_args(["data", "--vector-cache", "v.npy"])

    assert (args.products, args.import_products, args.import_rounds) == (100_000, 5_000, 3)


class _QueryRecorder:
    def __init__(self) -> None:
        self.queries: list[list[str]] = []

    def embed_queries(self, texts):
        self.queries.append(list(texts))
        return []


def test_import_step_needs_no_loaded_tenant(search_speed, monkeypatch):
    benchmark = search_speed.Benchmark.__new__(search_speed.Benchmark)
    benchmark.args = argparse.Namespace(embed_only=False, steps=["import"])
    benchmark.embedder = _QueryRecorder()
    ran: list[str] = []

    def no_loaded_tenant(slug):
        raise AssertionError(f"looked up the loaded tenant {slug}")

    monkeypatch.setattr(benchmark, "_print_environment", lambda: None)
    monkeypatch.setattr(benchmark, "_loaded_tenant", no_loaded_tenant)
    monkeypatch.setattr(benchmark, "import_throughput", lambda: ran.append("import"))

    benchmark.run()

    assert ran == ["import"]
    assert benchmark.embedder.queries == []
