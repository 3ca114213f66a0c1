"""The README and the documentation say what the code does: the README stays short, its quick start is
the two commands .ci/run reads, its tables of models and datasets are the model table (mvae_cli/zoo.py)
and the dataset registry, its commands are the CLI's, its links lead somewhere, and every option or
command the pages name exists.

When a table test fails, its message is the table as it should read: paste it into the README.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from typer.main import get_command

from mvae_cli import zoo
from mvae_cli.cli.app import app
from mvae_cli.data.registry import DATASETS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Pages quoting other tools' command lines (the benchmark scripts' options) are not checked for options.
MEASUREMENT_LOGS = ("performance.md", "performance-log/*.md", "polymnist.md")
# Options of other programs that the pages name: mkdocs, tensorboard, torchrun.
FOREIGN_OPTIONS = {"--strict", "--logdir", "--nproc-per-node"}
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_OPTION = re.compile(r"(?<![\w/-])--[a-z][a-z0-9-]*")


def section(text: str, heading: str) -> str:
    """The body of ``## heading`` up to the next ``## ``."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def cells(row: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` is a bar inside a cell)."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text`` (no header, no rule)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [cells(row) for row in rows[2:]]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def models_table() -> str:
    """The README's table of models, from the model table."""
    lines = ["| model | fusion | objective | paper |", "| --- | --- | --- | --- |"]
    for name in zoo.names():
        entry = zoo.entry(name)
        objective = entry.objective.__name__.removesuffix("Objective")
        lines.append(f"| `{name}` | {_cell(entry.fusion)} | {objective} | {_cell(entry.paper)} |")
    return "\n".join(lines)


def datasets_table() -> str:
    """The README's table of datasets, from the dataset registry."""
    lines = ["| dataset | what |", "| --- | --- |"]
    lines += [f"| `{entry.name}` | {_cell(entry.description)} |" for entry in DATASETS.values()]
    return "\n".join(lines)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` (and so mkdocs) gives a heading."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)  # no headings in code
    return {slug(h.replace("`", "")) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)}


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file, or heading anchor in a Markdown file, does not exist."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: {file.name} has no heading #{anchor}")
    return broken


def checked_pages() -> list[Path]:
    logs = {p for pattern in MEASUREMENT_LOGS for p in DOCS.rglob(pattern)}
    return [README, *sorted(p for p in DOCS.rglob("*.md") if p not in logs)]


def cli_options() -> set[str]:
    """Every option of every ``mvae`` command, and the top level's."""
    group = get_command(app)
    found = {"--help", "-h"} | {opt for p in group.params for opt in (*p.opts, *p.secondary_opts)}
    for command in group.commands.values():
        found |= {opt for p in command.params for opt in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}
    return found


# --- the README -------------------------------------------------------------------------------

def test_the_readme_reads_in_five_minutes():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_the_quick_start_is_two_commands_and_ci_runs_the_second():
    text = README.read_text(encoding="utf-8")
    block = section(text, "Quick start").split("```bash\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert block == ["pip install -e . && mvae sweep recipes/quickstart.yaml",
                     'pip install -e ".[test]" && python -m pytest']
    assert (ROOT / "recipes" / "quickstart.yaml").is_file()
    # .ci/run takes the first line with `pytest` between "## Quick start" and the first "```" line.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sed -n '/^## Quick start/,/^```$/p' README.md | grep -m1 'pytest'" in ci
    lines = text.splitlines()
    start = lines.index("## Quick start")
    end = next(i for i in range(start, len(lines)) if lines[i] == "```")
    assert next(line for line in lines[start:end + 1] if "pytest" in line) == block[1]


def test_the_models_table_is_the_model_table():
    shown = section(README.read_text(encoding="utf-8"), "Models")
    expected = models_table()
    assert expected in shown, f"the README's table of models should read:\n{expected}"


def test_the_datasets_table_is_the_registry():
    shown = section(README.read_text(encoding="utf-8"), "Datasets")
    expected = datasets_table()
    assert expected in shown, f"the README's table of datasets should read:\n{expected}"


def test_the_commands_table_is_every_command_with_its_page():
    rows = table(section(README.read_text(encoding="utf-8"), "Commands"))
    listed = {}
    for first, *_ in rows:
        name, page = re.fullmatch(r"\[`mvae (\S+)[^`]*`\]\(docs/commands/([\w-]+)\.md\)", first).groups()
        listed[name] = page
    assert listed == {name: name for name in get_command(app).commands}


def test_the_picture_is_a_figure_of_the_repository():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    assert pictures and all((ROOT / p).is_file() and p.startswith("docs/figures/") for p in pictures)


# --- every page -------------------------------------------------------------------------------

def test_the_readmes_links_lead_somewhere():
    # The site's own links are checked by `mkdocs build --strict` (.ci/run); the README is not in the site.
    assert broken_links(README) == []


def _benchmark_options() -> set[str]:
    """The options of the scripts under benchmarks/ (docs/benchmarks.md names them)."""
    return {option for script in (ROOT / "benchmarks").glob("*.py")
            for option in re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", script.read_text(encoding="utf-8"))}


def test_every_option_the_pages_name_exists():
    known = cli_options() | FOREIGN_OPTIONS | _benchmark_options()
    unknown = {page.relative_to(ROOT).as_posix(): sorted(set(_OPTION.findall(page.read_text(encoding="utf-8"))) - known)
               for page in checked_pages()}
    assert {page: options for page, options in unknown.items() if options} == {}


def test_every_command_the_pages_name_exists():
    commands = set(get_command(app).commands)
    named = {}
    for page in [README, *DOCS.rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        found = set(re.findall(r"`mvae ([a-z][a-z-]*)", text))
        found |= set(re.findall(r"^(?:\$ )?mvae ([a-z][a-z-]*)", text, flags=re.MULTILINE))  # in code blocks
        if found - commands:
            named[page.relative_to(ROOT).as_posix()] = sorted(found - commands)
    assert named == {}


# --- the checks can fail ----------------------------------------------------------------------

def test_the_checks_find_a_wrong_table_a_broken_link_and_a_stale_option(tmp_path):
    assert cells(r"| `vae` | q(z\|x) alone | VAE |") == ["`vae`", "q(z|x) alone", "VAE"]
    assert slug("Fig. 4 on MNIST: accuracy (short `CPU` schedule)") == "fig-4-on-mnist-accuracy-short-cpu-schedule"
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Some part\n\n```\n# not a heading\n```\n")
    page.write_text("[a](other.md#some-part) [b](other.md#not-a-heading) [c](gone.md) [d](https://example.org)\n")
    assert broken_links(page) == ["other.md#not-a-heading: other.md has no heading #not-a-heading",
                                  "gone.md: no such file"]
    assert set(_OPTION.findall("`mvae eval --particles 10 --no-such` and a-b--c")) == {"--particles", "--no-such"}
    assert "--no-such" not in cli_options() and {"--particles", "-k", "--no-baseline", "--version"} <= cli_options()
    shuffled = models_table().splitlines()
    shuffled[2], shuffled[3] = shuffled[3], shuffled[2]
    assert models_table() not in "\n".join(shuffled)
