"""`python -m service catalog generate` and the catalog flags of `up`: demo catalogs at shop
scale, written by the real command into tmp dirs and read back with Catalog.load."""

from __future__ import annotations

import json

import pytest

from service import paths
from service.cli import main
from service.inventory.catalog import SKU_PATTERN, Catalog
from service.inventory.demo_catalog import MAX_BOOKS, sku


def generate(capsys, out, *args: str) -> str:
    assert main(["catalog", "generate", "--out", str(out), *args]) == 0
    return capsys.readouterr().out


def test_the_same_command_writes_the_same_file_and_another_seed_another(tmp_path, capsys):
    first, again, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    generate(capsys, first, "--books", "300")
    generate(capsys, again, "--books", "300", "--seed", "1")
    generate(capsys, other, "--books", "300", "--seed", "2")
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_the_shops_books_come_first_then_generated_ones_up_to_n(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    said = generate(capsys, out, "--books", "2000")
    assert said.strip() == f"wrote 2000 books (4 from the shop, 1996 generated) to {out}"
    shop = Catalog.load(paths.DEFAULT_CATALOG)
    catalog = Catalog.load(out)
    assert len(catalog.books) == 2000
    assert catalog.books[:4] == shop.books  # their own stock too, without --copies
    assert catalog.featured == shop.featured
    assert [b.sku for b in catalog.books[4:7]] == ["demo-00001", "demo-00002", "demo-00003"]
    assert catalog.books[-1].sku == "demo-01996"


def test_skus_are_valid_unique_and_padded_to_one_width(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    generate(capsys, out, "--books", "1000")
    skus = Catalog.load(out).skus
    assert len(set(skus)) == len(skus)
    assert all(SKU_PATTERN.match(s) for s in skus)
    assert len(sku(1)) == len(sku(MAX_BOOKS - 4)) and SKU_PATTERN.match(sku(MAX_BOOKS - 4))


def test_generated_books_are_marked_demo_and_look_like_books(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    generate(capsys, out, "--books", "500")
    data = json.loads(out.read_text())
    assert data["demo"] is True
    shop, generated = data["books"][:4], data["books"][4:]
    assert not any("demo" in book for book in shop)
    assert all(book["demo"] is True for book in generated)
    assert all(5.0 <= book["price"] <= 60.0 for book in generated)
    assert all(1 <= book["stock"] <= 50 for book in generated)
    assert len({book["stock"] for book in generated}) > 10  # a spread, not one number
    assert len({book["title"] for book in generated}) > 100
    assert all(book["title"] and book["author"] for book in generated)
    covers = {book["cover"] for book in generated}
    assert covers == {book["cover"] for book in shop}
    assert all((paths.STATIC / cover).is_file() for cover in covers)


def test_copies_sets_the_stock_of_every_book_the_shops_too(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    generate(capsys, out, "--books", "50", "--copies", "7")
    assert {book.stock for book in Catalog.load(out).books} == {7}


def test_the_smallest_catalog_is_the_shop_itself(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    generate(capsys, out, "--books", "4")
    assert Catalog.load(out).books == Catalog.load(paths.DEFAULT_CATALOG).books


@pytest.mark.parametrize(("args", "complaint"), [
    (["--books", "3"], "between 4 (the shop's own books)"),
    (["--books", "0"], "between 4"),
    (["--books", "-10"], "between 4"),
    (["--books", str(MAX_BOOKS + 1)], f"and {MAX_BOOKS}"),
    (["--books", "10", "--copies", "0"], "--copies 0 is out of range"),
    (["--books", "10", "--copies", "-3"], "--copies -3 is out of range"),
])
def test_bad_counts_are_refused_with_one_line_and_nothing_written(tmp_path, capsys, args,
                                                                 complaint):
    out = tmp_path / "catalog.json"
    assert main(["catalog", "generate", "--out", str(out), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert complaint in captured.err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_path_is_refused_before_anything_is_written(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    for out, complaint in [(tmp_path / "missing" / "catalog.json", "mkdir -p"),
                           (a_file / "catalog.json", "does not exist"),
                           (tmp_path, "is a directory")]:
        assert main(["catalog", "generate", "--books", "10", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out ") and err.count("\n") == 1 and complaint in err
    assert list(tmp_path.iterdir()) == [a_file]
    assert a_file.read_text() == "keep me"


# `up` refuses these before it renders or starts anything, so no cluster runs here.
@pytest.mark.parametrize(("args", "complaint"), [
    (["--books", "10", "--catalog", "x.json"], "--books and --catalog exclude each other"),
    (["--copies", "5"], "add --books N"),
    (["--books", "2"], "between 4"),
    (["--books", "10", "--copies", "0"], "--copies 0 is out of range"),
])
def test_up_refuses_bad_catalog_flags_before_starting_anything(tmp_path, capsys, args,
                                                               complaint):
    var = tmp_path / "var"
    assert main(["up", "--var-dir", str(var), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and complaint in err
    assert not var.exists()


def test_up_refuses_a_catalog_file_that_does_not_load_and_names_the_fix(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"books": [{"sku": "Not A Sku", "title": "t", "author": "a",
                                          "price": 1, "stock": 1}]}))
    var = tmp_path / "var"
    for catalog in (bad, tmp_path / "missing.json"):
        assert main(["up", "--var-dir", str(var), "--catalog", str(catalog)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --catalog {catalog}: ")
        assert "catalog generate" in err and "leave out --catalog" in err
    assert not var.exists()
