"""The demo courses' data files (portal/learning/demo_courses/): read by ``load_courses``, which
refuses a file that does not say what it must, and shipped with the package."""

from __future__ import annotations

import glob
import shutil
import tomllib
from pathlib import Path

import pytest

from portal.learning import demo_content
from portal.learning.demo_content import DATA, DemoContentError, load_courses

ROOT = Path(__file__).resolve().parents[2]
SLUG = "personal-finance-foundations"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A copy of one demo course's folder, listed alone."""
    shutil.copytree(Path(str(DATA)) / SLUG, tmp_path / SLUG)
    (tmp_path / "courses.toml").write_text(f'courses = ["{SLUG}"]\n')
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_courses_come_from_the_data_folder_in_its_order():
    index = tomllib.loads((Path(str(DATA)) / "courses.toml").read_text())
    assert [course.slug for course in demo_content.COURSES] == index["courses"]
    assert load_courses() == demo_content.COURSES


def test_a_copy_of_a_course_reads_the_same(data):
    assert load_courses(data) == [demo_content.course_by_slug(SLUG)]


def test_an_edited_lesson_file_is_what_the_course_holds(data):
    _edit(data / SLUG / "lessons" / "building-a-budget-that-works.md", "A budget is not a punishment.",
          "A budget is a plan.")
    (course,) = load_courses(data)
    assert course.modules[0].lessons[0].body.startswith("# Why budget at all?\n\nA budget is a plan.")


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("course.md", "estimated_hours = 3", "estimated_hour = 3", "missing estimated_hours; unknown estimated_hour"),
    ("course.md", 'level = "beginner"', 'level = "expert"', "level must be one of"),
    ("lessons/how-compound-interest-works.md", "estimated_minutes = 20\n", "",
     "missing estimated_minutes"),
    ("quizzes.toml", 'answer = "10800"', "answer = 10800.0", "answer must be a decimal number in quotes"),
    ("quizzes.toml", "module = 2", "module = 3", "module must be 1 to 2"),
    ("quizzes.toml", 'kind = "essay"', 'kind = "poem"', "kind must be one of"),
    ("quizzes.toml", "answer = false", 'answer = "no"', "answer is true or false"),
    ("assignment.md", 'points = 25, description', 'score = 25, description', "unknown score"),
    ("assignment.md", "+++\n\n", "\n", "front matter"),
    ("quizzes.toml", "[[quiz]]", "[[quiz]", "quizzes.toml"),
], ids=["misspelt key", "unknown level", "missing key", "float answer", "no such module", "unknown kind",
        "true/false answer", "rubric level key", "no front matter end", "not TOML"])
def test_a_file_that_does_not_say_what_it_must_is_refused_by_name(data, file, old, new, message):
    _edit(data / SLUG / file, old, new)
    with pytest.raises(DemoContentError, match=message) as refused:
        load_courses(data)
    assert Path(file).name in str(refused.value)


def test_every_lesson_file_belongs_to_one_module(data):
    (data / SLUG / "lessons" / "stray.md").write_text("+++\ntitle = \"Stray\"\nestimated_minutes = 1\n+++\n\n# S\n")
    with pytest.raises(DemoContentError, match="not in any: stray.md"):
        load_courses(data)


def test_a_listed_lesson_file_must_exist(data):
    (data / SLUG / "lessons" / "how-compound-interest-works.md").unlink()
    with pytest.raises(DemoContentError, match="how-compound-interest-works.md: no such file"):
        load_courses(data)


def test_the_index_lists_every_course_folder(data):
    shutil.copytree(data / SLUG, data / "another-course")
    with pytest.raises(DemoContentError, match="courses must list each course folder once"):
        load_courses(data)


def test_every_data_file_ships_with_the_package():
    """setuptools copies the files the package-data globs match (glob, recursive); an installed
    portal must find every one of them."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = settings.get("package-data", {}).get("portal.learning", [])
    package = ROOT / "portal" / "learning"
    shipped = {Path(name) for pattern in patterns for name in glob.glob(pattern, root_dir=package, recursive=True)
               if (package / name).is_file()}
    files = {path.relative_to(package) for path in (package / "demo_courses").rglob("*") if path.is_file()}
    assert len(files) > 20
    assert files <= shipped
