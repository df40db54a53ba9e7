"""One default bundle for every command, and an error that points one folder down.

The Quick start builds the demo at engines/demo; every command that reads a bundle looks there when none is
named, and a user who names the folder above a bundle is told which bundle to pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from olvf.errors import BundleError, UsageError
from olvf.runtime.bundle.files import open_bundle
from olvf.runtime.bundle.manifest import DEFAULT_BUNDLE

PARSERS = ["olvf.runtime.cli", "olvf.runtime.validation.cli", "olvf.bench.cli"]


@pytest.mark.parametrize("module", PARSERS)
def test_every_command_that_reads_a_bundle_defaults_to_the_quick_starts_demo(module: str) -> None:
    import importlib

    parser = importlib.import_module(module).build_parser()
    needs = {"olvf.runtime.cli": ["x.dcm"], "olvf.runtime.validation.cli": ["labels.csv"], "olvf.bench.cli": []}
    assert parser.parse_args(needs[module]).bundle == DEFAULT_BUNDLE == Path("engines/demo")


def test_the_demo_export_writes_where_the_commands_look_and_a_checkpoint_export_names_its_folder(
    tmp_path: Path,
) -> None:
    from olvf.export import cli

    args = cli.build_parser().parse_args(["--resnet50", str(tmp_path / "r.pt")])
    with pytest.raises(UsageError, match=r"--out DIR is required.*engines/demo is where the demo bundle goes"):
        cli.run(args)
    assert cli.build_parser().parse_args(["--demo"]).out is None  # resolved to DEFAULT_BUNDLE by run()


def test_naming_the_folder_above_a_bundle_says_which_bundle_to_pass(tiny_bundle: Path, tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    shutil.copytree(tiny_bundle, engines / "demo")
    with pytest.raises(BundleError, match=r"no manifest\.json\) but holds one: pass --bundle .*engines/demo$"):
        open_bundle(engines)
    shutil.copytree(tiny_bundle, engines / "site")
    with pytest.raises(BundleError, match=r"holds bundles: pass --bundle .*engines/demo or .*engines/site$"):
        open_bundle(engines)


def test_a_folder_with_no_bundle_in_it_or_under_it_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(BundleError, match="is not a model bundle .*create one with olvf-export --out DIR"):
        open_bundle(tmp_path / "empty")


def test_olvf_infer_pointed_at_the_parent_exits_with_one_line_naming_the_bundle(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from olvf.runtime.cli import main

    engines = tmp_path / "engines"
    shutil.copytree(tiny_bundle, engines / "demo")
    film = tmp_path / "film.png"
    film.write_bytes(b"\x89PNG\r\n\x1a\n")
    code = main(["--bundle", str(engines), "--out", str(tmp_path / "out"), str(film)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and f"pass --bundle {engines / 'demo'}" in err[0], err
