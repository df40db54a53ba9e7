"""Reading a hospital's labelled set: the documented CSV, and one line naming the row for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from olvf.errors import InputError
from olvf.runtime.validation.labels import read_labels


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "studies").mkdir()
    for name in ("studies/a.dcm", "studies/b.png", "c.dcm"):
        (tmp_path / name).write_bytes(b"not read by the label reader")
    return tmp_path


def write(folder: Path, text: str, name: str = "labels.csv", bom: bool = False) -> Path:
    path = folder / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


GOOD = """file,level,class,x1,y1,x2,y2,note
studies/a.dcm,L2,Fresh,10,20,110,90,collapsed
studies/a.dcm,t12,normal,,,,
./studies/a.dcm,L1,old,5,5,50,40.5,

studies/b.png,L5,normal,1,2,3,4,
c.dcm,L3,normal,,,,
"""


def test_reads_the_documented_format(folder: Path) -> None:
    labelled = read_labels(write(folder, GOOD, bom=True))
    assert labelled.keys == ("studies/a.dcm", "studies/b.png", "c.dcm")
    a = labelled.study("studies/a.dcm")
    assert a.path == folder / "studies/a.dcm"
    assert [(v.level, v.label, v.box, v.row) for v in a.vertebrae] == [
        ("T12", "normal", None, 3),
        ("L1", "old", (5.0, 5.0, 50.0, 40.5), 4),
        ("L2", "fresh", (10.0, 20.0, 110.0, 90.0), 2),
    ]
    assert not a.has_boxes and labelled.study("studies/b.png").has_boxes
    assert labelled.composition() == {
        "studies": 3,
        "vertebrae": 5,
        "classes": {"normal": 3, "old": 1, "fresh": 1},
        "levels": {"T12": 1, "L1": 1, "L2": 1, "L3": 1, "L4": 0, "L5": 1},
        "with_box": 3,
        "studies_with_fresh": 1,
    }


def test_a_folder_means_its_labels_csv_and_boxes_are_optional(folder: Path) -> None:
    write(folder, "file,level,class\nc.dcm,L4,old\n")
    labelled = read_labels(folder)
    assert labelled.source == folder / "labels.csv"
    assert labelled.studies[0].vertebrae[0].box is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "file,level,class\nc.dcm,L1,normal\nc.dcm,L2,frsh\n",
            "labels.csv row 3: class 'frsh' is not one of normal, old, fresh",
        ),
        ("file,level,class\nc.dcm,L6,normal\n", "labels.csv row 2: level 'L6' is not one of T12, L1, L2, L3, L4, L5"),
        (
            "file,level,class\nc.dcm,L1,normal\nc.dcm,L2,old\n./c.dcm,L1,fresh\n",
            "labels.csv row 4: ./c.dcm has L1 twice (also row 2); keep one row per level",
        ),
        ("file,level,class\nmissing.dcm,L1,normal\n", "labels.csv row 2: image missing.dcm does not exist"),
        ("file,level,class\nstudies,L1,normal\n", "labels.csv row 2: image studies is a folder, not an image"),
        (
            "file,level,class,x1,y1,x2,y2\nc.dcm,L1,normal,10,10,,\n",
            "labels.csv row 2: box x1,y1,x2,y2 is partly empty",
        ),
        (
            "file,level,class,x1,y1,x2,y2\nc.dcm,L1,normal,10,10,5,50\n",
            "labels.csv row 2: box 10,10,5,50 is empty or reversed",
        ),
        ("file,level,class,x1,y1,x2,y2\nc.dcm,L1,normal,a,10,5,50\n", "labels.csv row 2: box x1 'a' is not a number"),
        (
            "file,level,class,x1,y1,x2,y2\nc.dcm,L1,normal,-1,10,5,50\n",
            "labels.csv row 2: box x1 '-1' must be a finite",
        ),
        ("file,level,class\n", "labels.csv: no labelled vertebrae (only a header)"),
        ("", "labels.csv: the file is empty"),
        ("file,level\nc.dcm,L1\n", "labels.csv row 1: the header lacks class"),
        ("file;level;class\nc.dcm;L1;normal\n", "it looks semicolon-separated"),
        ("file,level,class,x1,y1\nc.dcm,L1,normal,1,2\n", "box columns need all of x1,y1,x2,y2; x2, y2 missing"),
        ("file,level,class\nc.dcm,L1,normal,extra\n", "labels.csv row 2: 4 cells but the header has 3 columns"),
        ("file,level,class\n,L1,normal\n", "labels.csv row 2: the file cell is empty"),
    ],
)
def test_a_bad_labels_file_gets_one_line_naming_the_row(folder: Path, text: str, message: str) -> None:
    path = write(folder, text)
    with pytest.raises(InputError) as info:
        read_labels(path)
    text_of_error = str(info.value)
    assert "\n" not in text_of_error
    assert text_of_error.startswith(str(path)), text_of_error
    expected = message.replace("labels.csv", str(path), 1) if message.startswith("labels.csv") else message
    assert expected in text_of_error


def test_rows_are_counted_as_a_spreadsheet_shows_them(folder: Path) -> None:
    # A quoted cell spanning two lines and a blank line: the error names the line the bad row ends on.
    path = write(folder, 'file,level,class,note\nc.dcm,L1,normal,"two\nlines"\n\nc.dcm,L2,bad,\n')
    with pytest.raises(InputError, match=r"row 5: class 'bad'"):
        read_labels(path)


def test_missing_file_or_folder_says_what_a_labelled_set_is(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no labels.csv in that folder"):
        read_labels(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_labels(tmp_path / "nope.csv")
    (tmp_path / "latin1.csv").write_bytes("file,level,class\nc\xe9.dcm,L1,normal\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_labels(tmp_path / "latin1.csv")
