"""%%flow --map (one task per element of a list known at run time) and %%flow --shell."""

from __future__ import annotations

from .conftest import error_of, text_of

LAST_RUN = "last_run()"


def statuses(kernel) -> list:
    return kernel.value(f"sorted([t.name, t.index, t.status] for t in {LAST_RUN}.tasks)")


def test_a_mapped_cell_runs_once_per_element_and_is_cached(kernel):
    kernel.ok("n_files = 3")
    kernel.ok("%%flow listing\nnames = [f'file-{i}.txt' for i in range(n_files)]")
    cell = "%%flow sizes --map names\nprint('measuring', names)\nsize = len(names)\nupper = names.upper()"
    out = kernel.ok(cell)
    assert kernel.value("size") == [10, 10, 10]
    assert kernel.value("upper") == ["FILE-0.TXT", "FILE-1.TXT", "FILE-2.TXT"]
    assert "measuring file-1.txt" in out           # each element's output, in the cell
    ran = statuses(kernel)
    assert [r for r in ran if r[0] == "sizes.each"] == [["sizes.each", i, "SUCCESS"] for i in range(3)]
    assert ["listing", None, "CACHED"] in ran

    kernel.ok("del size")
    kernel.ok(cell)
    assert kernel.value("size") == [10, 10, 10]
    assert all(status == "CACHED" for _, _, status in statuses(kernel))

    kernel.ok("n_files = 4")                         # the list grows: only the new element runs
    kernel.ok("%%flow listing\nnames = [f'file-{i}.txt' for i in range(n_files)]")
    kernel.ok(cell)
    each = {i: s for name, i, s in statuses(kernel) if name == "sizes.each"}
    assert each == {0: "CACHED", 1: "CACHED", 2: "CACHED", 3: "SUCCESS"}
    assert kernel.value("len(size)") == 4

    bad = kernel.run("%%flow wrong --map nothing_read\ny = 1")
    assert error_of(bad)["ename"] == "CellError" and "--map nothing_read" in text_of(bad)


def test_shell_cells_take_files_and_values_from_the_notebook(kernel):
    work = kernel.work
    (work / "fruit.txt").write_text("pear\napple\nfig\n")
    kernel.ok(f"fruit = jf.file({str(work / 'fruit.txt')!r})\nlines = 2")
    out = kernel.ok("%%flow sort_fruit --shell --out ordered=sorted/fruit.txt\nsort {fruit} -o {ordered}")
    assert kernel.value("open(ordered).read()") == "apple\nfig\npear\n"
    assert "$ sort" in out
    kernel.ok("%%flow top --shell\nhead -n {lines} {ordered}")
    assert kernel.value("top") == "apple\nfig\n"
    assert kernel.value(f"[t.status for t in {LAST_RUN}.tasks]") == ["CACHED", "SUCCESS"]
    kernel.ok("%%flow top --shell\nhead -n {lines} {ordered}")
    assert kernel.value(f"[t.status for t in {LAST_RUN}.tasks]") == ["CACHED", "CACHED"]

    failed = kernel.run("%%flow broken --shell\necho nope >&2; exit 4")
    error = error_of(failed)
    assert error["ename"] == "ShellCommandFailed" and "code 4" in "\n".join(error["traceback"])
    assert "nope" in text_of(failed)
    missing = kernel.run("%%flow orphan --shell\ncat {undefined_file}")
    assert error_of(missing)["ename"] == "CellError" and "undefined_file" in text_of(missing)


def test_shell_cells_refuse_quoted_fields_and_escaping_outputs_and_hide_secrets(kernel):
    work = kernel.work
    marker = work / "PWNED"
    kernel.ok(f"sample = '$(touch {marker})'\nAPI_TOKEN = 'tok-5be0c1d7'")
    quoted = kernel.run('%%flow announce --shell\necho "processing {sample}"')
    assert error_of(quoted)["ename"] == "CellError"
    assert """cell 'announce': {sample} is inside double quotes""" in text_of(quoted)
    assert 'echo "processing "{sample}' in text_of(quoted)               # the fix, spelled out
    fixed = kernel.ok('%%flow announce --shell\necho "processing "{sample} && test -n {API_TOKEN}')
    assert not marker.exists() and kernel.value("announce") == f"processing $(touch {marker})\n"
    assert "$ echo \"processing \"'$(touch" in fixed and "test -n ***" in fixed
    assert "tok-5be0c1d7" not in fixed

    escaped = kernel.run("%%flow report --shell --out rep=../escaped.txt\necho hi > {rep}")
    assert error_of(escaped)["ename"] == "CellError"
    assert "--out rep=../escaped.txt is outside the working directory" in text_of(escaped)
    assert not (work.parent / "escaped.txt").exists()
    unclosed = kernel.run("%%flow half --shell\necho 'half {sample}")
    assert error_of(unclosed)["ename"] == "CellError"
    assert "cell 'half': the command has a ' quote that is never closed" in text_of(unclosed)
