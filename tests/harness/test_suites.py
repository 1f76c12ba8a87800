"""Suites: the shipped files load and expand well; every malformed file is a SuiteError naming the
file, the key and the valid choices."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness import adapters, suites
from harness.adapters.base import DTYPES
from harness.suites import PHASES, Cell, Suite, SuiteError, Timing
from reference_impl import models as catalogue

SHIPPED = ("default", "gpu", "quick", "smoke", "threads")

# A valid suite, as small as the format allows; each malformed case below edits one line of it.
BASE = """\
models = ["mlp", "mnist_cnn"]
frameworks = ["reference", "torch"]
devices = ["cpu"]
dtypes = ["float32"]
modes = ["eager"]
batch_sizes = [1, 32]
phases = ["forward", "train_step"]
threads = [2]
"""


def write(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edit(key: str, value: str | None) -> str:
    """BASE with `key = value` (the key removed when value is None, appended when new)."""
    lines = [line for line in BASE.splitlines() if not line.startswith(f"{key} =")]
    if value is not None:
        lines.insert(0, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def run_order(suite: Suite, cell: Cell) -> tuple:
    """The documented order of cells, as positions in the suite's own lists."""
    return (suite.threads.index(cell.threads), suite.models.index(cell.model),
            suite.batch_sizes.index(cell.batch_size), suite.phases.index(cell.phase),
            suite.dtypes.index(cell.dtype), suite.devices.index(cell.device),
            suite.frameworks.index(cell.framework), suites.framework_modes(cell.framework).index(cell.mode))


# --------------------------------------------------------------------------------------------
# the shipped suites


def test_the_shipped_suites_are_available():
    assert set(SHIPPED) <= set(suites.available())
    assert suites.available() == sorted(suites.available())


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_suite_expands_to_unique_stably_ordered_cells(name):
    suite = suites.load(name)
    assert suite.name == name and suite.path == suites.SUITES_DIR / f"{name}.toml"
    assert suite.description
    cells = suite.cells()
    assert cells
    assert len(set(cells)) == len(cells)
    assert len({c.key for c in cells}) == len(cells)
    assert cells == sorted(cells, key=lambda c: run_order(suite, c))
    assert suites.load(name).cells() == cells  # the same file, the same order
    for cell in cells:
        assert cell.mode in suites.framework_modes(cell.framework)
        assert not any(e.matches(cell) for e in suite.excludes)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_suite_starts_with_a_comment_saying_what_it_is_for(name):
    first = (suites.SUITES_DIR / f"{name}.toml").read_text().splitlines()[0]
    assert first.startswith(f"# {name}: ")


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_suite_interleaves_frameworks(name):
    """Within each group of cells that differ only in framework and mode, every framework appears,
    so no framework's cells all run in a row."""
    suite = suites.load(name)
    cells = suite.cells()
    frameworks = {c.framework for c in cells}
    assert len(frameworks) >= 2
    runs = [cells[0].framework]
    for cell in cells[1:]:
        if cell.framework != runs[-1]:
            runs.append(cell.framework)
    assert len(runs) > len(frameworks)  # each framework's cells come back, again and again


def test_quick_is_every_model_and_framework_in_its_idiomatic_mode_on_the_cpu():
    suite = suites.load("quick")
    assert suite.models == tuple(catalogue.names())
    assert suite.frameworks == tuple(adapters.names())
    assert suite.devices == ("cpu",) and suite.modes == (suites.IDIOMATIC,) and suite.dtypes == ("float32",)
    assert {(c.framework, c.mode) for c in suite.cells()} == {(f, suites.idiomatic_mode(f)) for f in adapters.names()}
    assert suite.timing.budget_s is not None and suite.timing.budget_s <= 300
    cells = suite.cells()
    assert all(a.framework != b.framework for a, b in zip(cells, cells[1:], strict=False))


def test_default_runs_every_mode_and_phase():
    suite = suites.load("default")
    assert suite.phases == PHASES
    assert {(c.framework, c.mode) for c in suite.cells()} == {
        (f, m) for f in adapters.names() for m in suites.framework_modes(f)}


def test_gpu_is_cuda_only_and_leaves_the_reference_out():
    cells = suites.load("gpu").cells()
    assert {c.device for c in cells} == {"cuda"}
    assert "reference" not in {c.framework for c in cells}


def test_threads_sweeps_thread_counts():
    suite = suites.load("threads")
    assert len(suite.threads) >= 2
    cells = suite.cells()
    half = len(cells) // 2
    assert {c.threads for c in cells[:half]} == {suite.threads[0]}  # a whole pass per thread count


# --------------------------------------------------------------------------------------------
# expansion


def test_cells_are_the_product_in_the_documented_order(tmp_path):
    suite = suites.load(write(tmp_path, BASE))
    cells = suite.cells()
    assert len(cells) == 2 * 2 * 2 * 2  # models x frameworks x batch sizes x phases
    assert [c.key for c in cells[:4]] == [
        "mlp.reference.cpu.float32.eager.b1.forward.t2",
        "mlp.torch.cpu.float32.eager.b1.forward.t2",
        "mlp.reference.cpu.float32.eager.b1.train_step.t2",
        "mlp.torch.cpu.float32.eager.b1.train_step.t2",
    ]


def test_the_files_order_of_values_is_kept(tmp_path):
    suite = suites.load(write(tmp_path, edit("batch_sizes", "[32, 1]")))
    assert suite.batch_sizes == (32, 1)
    assert suite.cells()[0].batch_size == 32


def test_excludes_remove_the_cells_matching_every_key(tmp_path):
    text = (BASE + '\n[[exclude]]\nmodels = ["mnist_cnn"]\nbatch_sizes = [32]\n'
            '\n[[exclude]]\nphases = ["train_step"]\nframeworks = ["reference"]\n')
    suite = suites.load(write(tmp_path, text))
    full = suites.load(write(tmp_path, BASE, "full.toml")).cells()
    cells = suite.cells()
    gone = [c for c in full if (c.model == "mnist_cnn" and c.batch_size == 32)
            or (c.phase == "train_step" and c.framework == "reference")]
    assert gone and cells == [c for c in full if c not in gone]
    assert any(c.model == "mnist_cnn" and c.batch_size == 1 for c in cells)  # only the combination goes
    assert any(c.batch_size == 32 for c in cells)


def test_each_framework_gets_only_its_own_named_modes(tmp_path):
    suite = suites.load(write(tmp_path, edit("modes", '["eager", "compile"]')))
    pairs = {(c.framework, c.mode) for c in suite.cells()}
    assert pairs == {("reference", "eager"), ("torch", "eager"), ("torch", "compile")}
    assert suite.modes_for("reference") == ("eager",)


def test_all_expands_to_the_known_names(tmp_path):
    text = BASE
    for key in ("models", "frameworks", "dtypes", "modes", "phases"):
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} =")) + f'\n{key} = "all"'
    suite = suites.load(write(tmp_path, text + "\n"))
    assert suite.models == tuple(catalogue.names())
    assert suite.frameworks == tuple(adapters.names())
    assert suite.dtypes == DTYPES and suite.phases == PHASES
    assert suite.modes == tuple(dict.fromkeys(m for f in adapters.names() for m in suites.framework_modes(f)))


def test_modes_all_means_the_modes_of_the_selected_frameworks(tmp_path):
    suite = suites.load(write(tmp_path, edit("modes", '"all"')))
    assert suite.modes == ("eager", "compile")  # reference and torch: no tf.function, no XLA


def test_a_plugin_that_cannot_load_still_gets_eager_cells(monkeypatch, tmp_path):
    """frameworks = "all" takes every registered adapter; one that cannot be imported is the runner's
    to record (as an error cell), not a reason to refuse the whole suite."""
    registered = {**adapters._registered(), "broken_plugin": "fwbench_no_such_module:Adapter"}
    monkeypatch.setattr(adapters, "_registered", lambda: registered)
    suites.framework_modes.cache_clear()
    try:
        suite = suites.load(write(tmp_path, edit("frameworks", '"all"')))
        assert "broken_plugin" in suite.frameworks
        assert {c.mode for c in suite.cells() if c.framework == "broken_plugin"} == {"eager"}
    finally:
        suites.framework_modes.cache_clear()


def test_timing_defaults_and_round_sizes(tmp_path):
    suite = suites.load(write(tmp_path, BASE))
    assert suite.timing == Timing() and suite.verify is True and suite.excludes == ()
    assert Timing(samples=12, rounds=5).round_sizes == (3, 3, 2, 2, 2)
    assert Timing(samples=10, rounds=5).round_sizes == (2,) * 5
    assert sum(Timing(samples=7, rounds=3).round_sizes) == 7


# --------------------------------------------------------------------------------------------
# finding suites


def test_a_bare_name_is_looked_up_in_the_suites_folder(tmp_path):
    assert suites.load("quick") == suites.load(suites.SUITES_DIR / "quick.toml")
    write(tmp_path, BASE, "mine.toml")
    suite = suites.load("mine", directory=tmp_path)
    assert suite.name == "mine" and suite.path == tmp_path / "mine.toml"
    assert suites.available(tmp_path) == ["mine"]


def test_a_path_is_loaded_as_given(tmp_path):
    path = write(tmp_path, 'name = "other"\ndescription = "d"\n' + BASE, "file.toml")
    assert suites.load(str(path)).name == "other"  # the name key wins over the stem
    assert suites.load(path).path == path


def test_an_unknown_name_lists_the_available_suites():
    with pytest.raises(SuiteError) as info:
        suites.load("quik")
    message = str(info.value)
    assert "'quik'" in message and "did you mean 'quick'" in message
    for name in SHIPPED:
        assert name in message


def test_a_missing_file_lists_the_available_suites(tmp_path):
    with pytest.raises(SuiteError) as info:
        suites.load(tmp_path / "nope.toml")
    message = str(info.value)
    assert "nope.toml" in message and "does not exist" in message
    for name in SHIPPED:
        assert name in message


# --------------------------------------------------------------------------------------------
# malformed suites: (the file's text, the key the message must name, what else it must say)

VALID_MODELS = ", ".join(catalogue.names())
VALID_FRAMEWORKS = ", ".join(adapters.names())
VALID_MODES = ", ".join([*dict.fromkeys(m for f in adapters.names() for m in suites.framework_modes(f)), "idiomatic"])

MALFORMED = {
    "toml syntax": (edit("threads", None) + "threads = = [2]\n", None, ["invalid TOML", "line 8, column 11"]),
    "unknown top-level key": (BASE + "batch_size = [3]\n", None,
                              ["'batch_size'", "did you mean 'batch_sizes'", "valid keys", "threads", "timing"]),
    "missing key": (edit("threads", None), None, ["missing key 'threads'"]),
    "unknown timing key": (BASE + "[timing]\nsample = 3\n", "timing",
                           ["'sample'", "did you mean 'samples'", "valid keys", "min_sample_s", "budget_s"]),
    "timing not a table": (BASE + "timing = 3\n", "timing", ["[timing] table"]),
    "batch size not a list": (edit("batch_sizes", "32"), "batch_sizes", ["expected a list of positive integers",
                                                                         "got 32 (int)"]),
    "batch size a string": (edit("batch_sizes", '["a"]'), "batch_sizes", ["expected a list of positive integers",
                                                                          "got 'a' (str)"]),
    "batch size a bool": (edit("batch_sizes", "[true]"), "batch_sizes", ["True"]),
    "batch size a float": (edit("batch_sizes", "[1.5]"), "batch_sizes", ["1.5"]),
    "batch size zero": (edit("batch_sizes", "[0, 8]"), "batch_sizes", ["0 is not positive"]),
    "threads negative": (edit("threads", "[-1]"), "threads", ["-1 is not positive"]),
    "devices a string": (edit("devices", '"cpu"'), "devices", ['["cpu"]', "'cpu'"]),
    "models all misspelt": (edit("models", '"every"'), "models", ['or "all"', "'every'"]),
    "unknown model": (edit("models", '["mlp", "resnet50"]'), "models", ["'resnet50'", f"valid: {VALID_MODELS}"]),
    "misspelt model": (edit("models", '["mnist-cnn"]'), "models", ["did you mean 'mnist_cnn'", VALID_MODELS]),
    "unknown framework": (edit("frameworks", '["mxnet"]'), "frameworks", ["'mxnet'", f"valid: {VALID_FRAMEWORKS}"]),
    "unknown dtype": (edit("dtypes", '["float16"]'), "dtypes", ["'float16'", "valid: float32, float64"]),
    "unknown device": (edit("devices", '["tpu"]'), "devices", ["'tpu'", "valid: cpu, cuda, cuda:N"]),
    "malformed device": (edit("devices", '["cuda:x"]'), "devices", ["'cuda:x'", "cuda:N"]),
    "unknown phase": (edit("phases", '["inference"]'), "phases", ["'inference'", "valid: " + ", ".join(PHASES)]),
    "unknown mode": (edit("modes", '["graph"]'), "modes", ["unknown mode 'graph'", f"valid: {VALID_MODES}"]),
    "mode of no selected framework": (edit("modes", '["xla"]'), "modes", ["'xla' belongs to none of the frameworks "
                                                                          "reference, torch", "valid: eager, compile"]),
    "empty list": (edit("models", "[]"), "models", ["is empty"]),
    "duplicate value": (edit("batch_sizes", "[1, 32, 1]"), "batch_sizes", ["1 is listed twice"]),
    "verify not a bool": (BASE + 'verify = "yes"\n', "verify", ["true or false", "'yes'"]),
    "bad name": ('name = "a b/c"\n' + BASE, "name", ["'a b/c'"]),
    "description not a string": ("description = 3\n" + BASE, "description", ["expected a string"]),
    "samples zero": (BASE + "[timing]\nsamples = 0\n", "timing.samples", ["positive integer", "0"]),
    "rounds zero": (BASE + "[timing]\nrounds = 0\n", "timing.rounds", ["positive integer", "0"]),
    "samples fewer than rounds": (BASE + "[timing]\nsamples = 3\nrounds = 5\n", "timing.samples",
                                  ["3 samples cannot fill 5 rounds", "samples must be >= rounds"]),
    "warmup negative": (BASE + "[timing]\nwarmup = -1\n", "timing.warmup", [">= 0", "-1"]),
    "min_sample_s negative": (BASE + "[timing]\nmin_sample_s = -0.1\n", "timing.min_sample_s", ["positive", "-0.1"]),
    "min_sample_s a string": (BASE + '[timing]\nmin_sample_s = "5ms"\n', "timing.min_sample_s", ["'5ms'"]),
    "budget zero": (BASE + "[timing]\nbudget_s = 0\n", "timing.budget_s", ["positive"]),
    "timeout infinite": (BASE + "[timing]\ncell_timeout_s = inf\n", "timing.cell_timeout_s", ["inf"]),
    "exclude unknown key": (BASE + '[[exclude]]\nmodels = ["mlp"]\n\n[[exclude]]\nmodel = ["mlp"]\n', "exclude[2]",
                            ["'model'", "did you mean 'models'", "valid keys", "batch_sizes"]),
    "exclude unknown value": (BASE + '[[exclude]]\nmodels = ["resnet"]\n', "exclude[1].models",
                              ["'resnet'", VALID_MODELS]),
    "exclude not a list": (BASE + "[[exclude]]\nbatch_sizes = 32\n", "exclude[1].batch_sizes", ["expected a list"]),
    "exclude empty": (BASE + "[[exclude]]\n", "exclude[1]", ["excludes nothing"]),
    "exclude a plain table": (BASE + '[exclude]\nmodels = ["mlp"]\n', "exclude", ["[[exclude]] tables"]),
    "excludes leave nothing": (BASE + '[[exclude]]\nthreads = [2]\n', "exclude", ["leave no cell"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_suite_names_the_file_the_key_and_the_choices(tmp_path, case):
    text, key, fragments = MALFORMED[case]
    path = write(tmp_path, text, "bad_suite.toml")
    with pytest.raises(SuiteError) as info:
        suites.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert info.value.source == str(path)
    if key is not None:
        assert info.value.key == key, message
        assert f": {key}: " in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_suite_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        suites.load(write(tmp_path, edit("models", "[]")))


def test_a_file_that_is_not_utf8_is_a_suite_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.encode() + 'description = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(SuiteError, match="latin1.toml"):
        suites.load(path)


def test_a_suite_built_in_code_is_validated_too():
    suite = suites.load("smoke")
    with pytest.raises(SuiteError, match="phases: unknown phase 'sideways'"):
        replace(suite, phases=("sideways",))
    with pytest.raises(SuiteError, match="batch_sizes: expected a list"):
        replace(suite, batch_sizes=[8])  # a list, not a tuple: frozen suites hold tuples


# --------------------------------------------------------------------------------------------
# round trips


def test_a_suite_round_trips_through_to_dict():
    for name in SHIPPED:
        suite = suites.load(name)
        again = Suite.from_dict(json.loads(json.dumps(suite.to_dict())), path=suite.path)
        assert again == suite


def test_from_dict_errors_name_the_source():
    with pytest.raises(SuiteError, match=r"^run\.json: models: is empty"):
        Suite.from_dict({**suites.load("smoke").to_dict(), "models": []}, source="run.json")


def test_cell_keys_are_unique_and_round_trip():
    cells = suites.load("default").cells() + suites.load("gpu").cells() + suites.load("threads").cells()
    cells = list(dict.fromkeys(cells))
    assert len({c.key for c in cells}) == len(cells)
    for cell in cells:
        assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell
        assert all(ch.isalnum() or ch in "._-" for ch in cell.key)


def test_cell_key_form():
    cell = Cell("mnist_cnn", "torch", "cuda:1", "float32", "eager", 32, "forward", 2)
    assert cell.key == "mnist_cnn.torch.cuda1.float32.eager.b32.forward.t2"
    assert replace(cell, device="cuda").key != cell.key
    assert sorted([replace(cell, batch_size=8), cell])[0].batch_size == 8  # orderable


def test_cell_validates_and_from_dict_names_bad_keys():
    with pytest.raises(ValueError, match="phase"):
        Cell("mlp", "torch", "cpu", "float32", "eager", 8, "sideways", 1)
    with pytest.raises(ValueError, match="batch_size"):
        Cell("mlp", "torch", "cpu", "float32", "eager", 0, "forward", 1)
    with pytest.raises(ValueError, match="device"):
        Cell("mlp", "torch", "tpu", "float32", "eager", 8, "forward", 1)
    data = Cell("mlp", "torch", "cpu", "float32", "eager", 8, "forward", 1).to_dict()
    with pytest.raises(ValueError, match=r"missing \['threads'\]"):
        Cell.from_dict({k: v for k, v in data.items() if k != "threads"})
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        Cell.from_dict({**data, "extra": 1})


def test_bare_names_are_found_in_a_checkout_or_where_an_install_put_them(tmp_path):
    checkout, prefix = tmp_path / "repo" / "suites", tmp_path / "venv"
    installed = prefix / "share" / "fwbench" / "suites"
    assert suites._suites_dir(checkout, (str(prefix),)) == checkout  # nothing anywhere: the checkout, to name
    installed.mkdir(parents=True)
    assert suites._suites_dir(checkout, (None, str(prefix))) == installed  # a regular install
    checkout.mkdir(parents=True)
    assert suites._suites_dir(checkout, (str(prefix),)) == checkout  # running from a checkout wins
