"""Each benchmark's fixture tree, freshly generated under the test's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.trees import Tree, make_cars, make_cub, make_imagefolder, make_inshop, make_sop


@pytest.fixture
def cub_tree(tmp_path: Path) -> Tree:
    return make_cub(tmp_path)


@pytest.fixture
def cars_tree(tmp_path: Path) -> Tree:
    return make_cars(tmp_path)


@pytest.fixture
def sop_tree(tmp_path: Path) -> Tree:
    return make_sop(tmp_path)


@pytest.fixture
def inshop_tree(tmp_path: Path) -> Tree:
    return make_inshop(tmp_path)


@pytest.fixture
def folder_tree(tmp_path: Path) -> Tree:
    return make_imagefolder(tmp_path)
