"""fer_sweep.data: the three source layouts, validation messages, the cache, subsets."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_sweep.data import (
    Dataset,
    _load,
    check_report,
    load_dataset,
    resolve_data_path,
    stratified_subset,
    write_synthetic_csv,
)
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, IMAGE_SIZE, SPLITS

README_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}
README_GZ_SHA256 = "510978d3f19be37403e24b55d727ef0ffe749ce3b641cfbf4de643169684e1ba"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.csv.gz"


# --- helpers ----------------------------------------------------------------------------


def _pixels(value: int = 7, count: int = IMAGE_SIZE * IMAGE_SIZE) -> str:
    return " ".join([str(value)] * count)


def _write_csv(path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _valid_rows() -> list[str]:
    return [
        f"0,{_pixels(1)},Training",
        f"3,{_pixels(2)},PublicTest",
        f"6,{_pixels(3)},PrivateTest",
    ]


def _assert_same_data(a: Dataset, b: Dataset, *, tolerance: float = 0.0) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.split, b.split)
    if tolerance:
        diff = np.abs(a.images.astype(int) - b.images.astype(int))
        assert diff.mean() < tolerance
    else:
        np.testing.assert_array_equal(a.images, b.images)


def _write_folder(ds: Dataset, root: Path, *, prefixed: bool, suffix: str = ".png") -> Path:
    """Write ``ds`` as ROOT/<split>/<emotion>/<image>, the split in prefixes or folder names."""
    folder_of = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    for i, (image, label, split) in enumerate(zip(ds.images, ds.labels, ds.split, strict=True)):
        usage = SPLITS[split]
        if prefixed:
            # The JPEG release: only train/test folders, the Usage kept in the file name.
            folder, name = ("test" if usage == "PrivateTest" else "train"), f"{usage}_{i}"
        else:
            folder, name = folder_of[usage], f"img{i}"
        target = root / folder / EMOTIONS[label].capitalize() / f"{name}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target, quality=95)
    return root


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    return write_synthetic_csv(tmp_path / "small.csv", per_split=14, seed=3)


# --- reading the three layouts ----------------------------------------------------------


def test_csv_loads_with_expected_shapes_and_dtypes(small_csv: Path) -> None:
    ds = load_dataset(small_csv)
    assert len(ds) == 42
    assert ds.images.shape == (42, IMAGE_SIZE, IMAGE_SIZE)
    assert ds.images.dtype == ds.labels.dtype == ds.split.dtype == np.uint8
    assert ds.counts() == {split: [2] * 7 for split in SPLITS}
    assert ds.source == str(small_csv.resolve())
    assert len(ds.sha256) == 64


def test_gzip_csv_gives_the_same_arrays(small_csv: Path, tmp_path: Path) -> None:
    gz = write_synthetic_csv(tmp_path / "small.csv.gz", per_split=14, seed=3)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    _assert_same_data(load_dataset(small_csv), load_dataset(gz))


def test_gzip_is_detected_by_magic_bytes_not_suffix(small_csv: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "looks-plain.csv"
    disguised.write_bytes(gzip.compress(small_csv.read_bytes()))
    _assert_same_data(load_dataset(small_csv), load_dataset(disguised))


def test_plain_text_with_gz_suffix_is_read_as_csv(small_csv: Path, tmp_path: Path) -> None:
    mislabelled = tmp_path / "not-really.csv.gz"
    mislabelled.write_bytes(small_csv.read_bytes())
    _assert_same_data(load_dataset(small_csv), load_dataset(mislabelled))


@pytest.mark.parametrize("prefixed", [True, False], ids=["file-prefix", "folder-name"])
def test_folder_layout_gives_the_same_arrays(
    small_csv: Path, tmp_path: Path, prefixed: bool
) -> None:
    expected = load_dataset(small_csv)
    root = _write_folder(expected, tmp_path / "images", prefixed=prefixed)
    ds = load_dataset(root)
    _assert_same_data(expected, ds)
    assert ds.source == str(root.resolve())


def test_folder_of_jpegs_matches_within_tolerance(small_csv: Path, tmp_path: Path) -> None:
    expected = load_dataset(small_csv)
    root = _write_folder(expected, tmp_path / "jpegs", prefixed=True, suffix=".jpg")
    _assert_same_data(expected, load_dataset(root), tolerance=6.0)


def test_folder_sha256_depends_on_content(small_csv: Path, tmp_path: Path) -> None:
    expected = load_dataset(small_csv)
    root = _write_folder(expected, tmp_path / "images", prefixed=False)
    first = load_dataset(root, use_cache=False).sha256
    assert load_dataset(root, use_cache=False).sha256 == first
    image = next(root.glob("train/*/*.png"))
    Image.fromarray(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)).save(image)
    assert load_dataset(root, use_cache=False).sha256 != first


def test_extra_columns_whitespace_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    rows = [f"x,{r.split(',')[0]}, {r.split(',')[1]} , {r.split(',')[2]} " for r in _valid_rows()]
    path = _write_csv(tmp_path / "loose.csv", [rows[0], "", *rows[1:]], "id,emotion,pixels,Usage")
    ds = load_dataset(path)
    assert ds.labels.tolist() == [0, 3, 6]
    assert ds.split.tolist() == [0, 1, 2]
    assert ds.images[2].min() == ds.images[2].max() == 3


# --- validation messages ----------------------------------------------------------------


CSV_PROBLEMS = {
    # name: (rows after the header, header, words expected in the message)
    "renamed column": (_valid_rows(), "emotion,pix,Usage", ["line 1", "missing", "pixels"]),
    "missing column": (_valid_rows(), "emotion,pixels", ["line 1", "missing", "Usage"]),
    "too few pixels": (
        [_valid_rows()[0], f"1,{_pixels(2, 2303)},Training"],
        None,
        ["line 3", "2,303 values", "2,304"],
    ),
    "too many pixels": (
        [f"1,{_pixels(2, 2305)},Training"],
        None,
        ["line 2", "2,305 values"],
    ),
    "empty pixels": ([*_valid_rows(), "1,,Training"], None, ["line 5", "0 values"]),
    "non-integer pixel": (
        [*_valid_rows(), f"1,{_pixels(2, 100)} 2.5 {_pixels(2, 2203)},Training"],
        None,
        ["line 5", "pixel 101", "'2.5'", "not an integer"],
    ),
    "word pixel": (
        [_valid_rows()[0], f"1,abc {_pixels(2, 2303)},Training"],
        None,
        ["line 3", "pixel 1", "'abc'", "not an integer"],
    ),
    "pixel above 255": (
        [*_valid_rows(), f"1,{_pixels(2, 2000)} 256 {_pixels(2, 303)},Training"],
        None,
        ["line 5", "pixel 2001", "256", "outside 0-255"],
    ),
    "negative pixel": (
        [_valid_rows()[0], f"1,-1 {_pixels(2, 2303)},Training"],
        None,
        ["line 3", "pixel 1", "-1", "outside 0-255"],
    ),
    "label 7": (
        [*_valid_rows(), f"7,{_pixels()},Training"],
        None,
        ["line 5", "label 7", "not in 0-6"],
    ),
    "label word": (
        [_valid_rows()[0], f"happy,{_pixels()},Training"],
        None,
        ["line 3", "'happy'", "not an integer"],
    ),
    "label float": ([f"3.0,{_pixels()},Training"], None, ["line 2", "'3.0'", "not an integer"]),
    "unknown usage": (
        [*_valid_rows(), f"1,{_pixels()},Validation"],
        None,
        ["line 5", "unknown Usage", "'Validation'"],
    ),
    "header only": ([], None, ["header but no data rows"]),
    "too many fields": (
        [*_valid_rows(), f"1,{_pixels()},Training,extra"],
        None,
        ["line 5", "4 fields", "header has 3"],
    ),
    "too few fields": (
        [_valid_rows()[0], f"1,{_pixels()}"],
        None,
        ["line 3", "2 fields", "header has 3"],
    ),
}


@pytest.mark.parametrize("problem", list(CSV_PROBLEMS))
def test_malformed_csv_raises_user_error_naming_file_line_and_problem(
    tmp_path: Path, problem: str
) -> None:
    rows, header, words = CSV_PROBLEMS[problem]
    path = _write_csv(tmp_path / "bad.csv", rows, header or "emotion,pixels,Usage")
    with pytest.raises(UserError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "bad.csv" in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    rows = [_valid_rows()[0], "", "", f"9,{_pixels()},Training"]
    with pytest.raises(UserError, match=r"bad\.csv line 5: label 9"):
        load_dataset(_write_csv(tmp_path / "bad.csv", rows))


def test_bad_row_in_gzip_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "\n".join(["emotion,pixels,Usage", *_valid_rows(), f"1,{_pixels(300)},Training"])
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(UserError, match=r"bad\.csv\.gz line 5: pixel 1 is 300, outside 0-255"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ["empty"]),
        (b"\n  \n", ["empty"]),
        (gzip.compress(b""), ["empty"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["not a text CSV", "line"]),
        (b"PK\x03\x04" + bytes(40), ["zip archive"]),
        (b"emotion,pixels,Usage\n0,\xff\xfe 1,Training\n", ["line 2", "not UTF-8"]),
    ],
    ids=["empty", "whitespace", "empty-gzip", "binary", "zip", "latin1"],
)
def test_unreadable_files_raise_user_error(tmp_path: Path, content: bytes, words: list[str]):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        load_dataset(path)
    assert "odd.csv" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_raises_user_error(small_csv: Path, tmp_path: Path, damage: str) -> None:
    packed = bytearray(gzip.compress(small_csv.read_bytes()))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    path = tmp_path / "damaged.csv.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(UserError, match=r"damaged\.csv\.gz: truncated or corrupt gzip"):
        load_dataset(path)


def _image_file(path: Path, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, color=90).save(path)
    return path


def test_folder_with_unknown_emotion_is_refused(tmp_path: Path) -> None:
    _image_file(tmp_path / "train" / "happy" / "a.png")
    _image_file(tmp_path / "train" / "contempt" / "b.png")
    with pytest.raises(UserError, match=r"contempt.*unknown emotion folder"):
        load_dataset(tmp_path)


def test_image_of_the_wrong_size_is_refused_not_resized(tmp_path: Path) -> None:
    _image_file(tmp_path / "train" / "sad" / "a.png")
    _image_file(tmp_path / "train" / "sad" / "big.png", size=(64, 60))
    with pytest.raises(UserError) as caught:
        load_dataset(tmp_path)
    message = str(caught.value)
    assert "big.png" in message and "64x60" in message and "refused" in message


def test_unreadable_image_is_refused(tmp_path: Path) -> None:
    _image_file(tmp_path / "test" / "fear" / "a.png")
    broken = tmp_path / "test" / "fear" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match=r"broken\.jpg: cannot read the image"):
        load_dataset(tmp_path)


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train" / "happy").mkdir(parents=True)
    (tmp_path / "train" / "happy" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"no images found"):
        load_dataset(tmp_path)


def test_image_without_a_split_is_refused(tmp_path: Path) -> None:
    _image_file(tmp_path / "misc" / "happy" / "face.png")
    with pytest.raises(UserError, match=r"face\.png: cannot tell its split.*'misc'"):
        load_dataset(tmp_path)


# --- the cache --------------------------------------------------------------------------


def _refuse_to_parse(path: Path) -> None:
    raise AssertionError(f"the source {path} was parsed again instead of read from the cache")


def test_second_load_reads_the_cache(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(os.listdir(small_csv.parent))
    first = load_dataset(small_csv)
    assert first.cache_path is not None and Path(first.cache_path).is_file()
    assert Path(first.cache_path).parent == Path(os.environ["FER_SWEEP_CACHE"])
    assert sorted(os.listdir(small_csv.parent)) == before
    monkeypatch.setattr(_load, "_read_source", _refuse_to_parse)
    second = load_dataset(small_csv)
    _assert_same_data(first, second)
    assert (second.sha256, second.cache_path) == (first.sha256, first.cache_path)
    assert not list(Path(first.cache_path).parent.glob("*.tmp"))


def test_changed_source_rebuilds_the_cache(small_csv: Path) -> None:
    first = load_dataset(small_csv)
    write_synthetic_csv(small_csv, per_split=7, seed=4)
    stat = small_csv.stat()
    os.utime(small_csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load_dataset(small_csv)
    assert len(first) == 42 and len(second) == 21
    assert second.sha256 != first.sha256
    assert second.cache_path == first.cache_path


def test_corrupt_cache_is_rebuilt(small_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(small_csv)
    Path(first.cache_path).write_bytes(b"this is not HDF5")
    _assert_same_data(first, load_dataset(small_csv))
    monkeypatch.setattr(_load, "_read_source", _refuse_to_parse)
    _assert_same_data(first, load_dataset(small_csv))


def test_cache_dir_argument_and_use_cache_false(small_csv: Path, tmp_path: Path) -> None:
    uncached = load_dataset(small_csv, use_cache=False)
    assert uncached.cache_path is None
    assert not list(Path(os.environ["FER_SWEEP_CACHE"]).iterdir())
    cached = load_dataset(small_csv, cache_dir=tmp_path / "elsewhere")
    assert Path(cached.cache_path).parent == tmp_path / "elsewhere"
    _assert_same_data(uncached, cached)


def test_folder_cache_notices_a_new_image(small_csv: Path, tmp_path: Path) -> None:
    root = _write_folder(load_dataset(small_csv), tmp_path / "images", prefixed=False)
    first = load_dataset(root)
    _image_file(root / "val" / "happy" / "img999.png")
    assert len(load_dataset(root)) == len(first) + 1


# --- subsets ----------------------------------------------------------------------------


def _imbalanced(class_counts: dict[str, list[int]]) -> Dataset:
    """A Dataset whose image i carries i in its first pixels, to check order and identity."""
    labels = np.concatenate(
        [np.repeat(np.arange(7), counts) for counts in class_counts.values()]
    ).astype(np.uint8)
    split = np.concatenate(
        [np.full(sum(counts), SPLITS.index(name)) for name, counts in class_counts.items()]
    ).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(labels))
    labels, split = labels[order], split[order]
    images = np.zeros((len(labels), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(len(labels)) // 256, np.arange(len(labels)) % 256
    return Dataset(images, labels, split, source="memory", sha256="0" * 64)


def _ids(ds: Dataset) -> np.ndarray:
    return ds.images[:, 0, 0].astype(int) * 256 + ds.images[:, 0, 1]


def test_stratified_subset_keeps_proportions_and_every_class() -> None:
    full = _imbalanced(
        {
            "Training": [400, 45, 410, 720, 480, 320, 500],
            "PublicTest": [47, 6, 50, 90, 65, 42, 61],
            "PrivateTest": [5, 0, 5, 5, 5, 5, 5],
        }
    )
    sub = stratified_subset(full, 100, seed=1)
    counts = sub.counts()
    assert [sum(row) for row in counts.values()] == [100, 100, 30]
    assert counts["PrivateTest"] == full.counts()["PrivateTest"]
    for name in ("Training", "PublicTest"):
        total = sum(full.counts()[name])
        for got, had in zip(counts[name], full.counts()[name], strict=True):
            assert abs(got - 100 * had / total) < 1
            assert got >= 1
    np.testing.assert_array_equal(sub.labels, full.labels[_ids(sub)])
    assert np.all(np.diff(_ids(sub)) > 0)


def test_stratified_subset_gives_rare_classes_one_row() -> None:
    full = _imbalanced(
        {"Training": [1, 1, 1, 1, 1, 1, 994], "PublicTest": [0] * 7, "PrivateTest": [0] * 7}
    )
    counts = stratified_subset(full, 10, seed=0).counts()["Training"]
    assert counts == [1, 1, 1, 1, 1, 1, 4]
    assert sum(stratified_subset(full, 3, seed=0).counts()["Training"]) == 3


def test_stratified_subset_is_deterministic_per_seed() -> None:
    full = _imbalanced({name: [60, 10, 60, 90, 70, 40, 70] for name in SPLITS})
    a, b = stratified_subset(full, 50, seed=7), stratified_subset(full, 50, seed=7)
    np.testing.assert_array_equal(_ids(a), _ids(b))
    assert not np.array_equal(_ids(a), _ids(stratified_subset(full, 50, seed=8)))


@pytest.mark.parametrize("bad", [0, -3])
def test_stratified_subset_refuses_non_positive_sizes(bad: int) -> None:
    with pytest.raises(UserError, match="at least 1"):
        stratified_subset(_imbalanced({name: [2] * 7 for name in SPLITS}), bad)


# --- resolving the path -----------------------------------------------------------------


@pytest.fixture
def bare_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER2013_DATA", raising=False)
    return tmp_path


def test_resolve_prefers_explicit_then_env_then_defaults(
    bare_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (bare_cwd / "data").mkdir()
    gz = bare_cwd / "data" / "fer2013.csv.gz"
    gz.write_bytes(b"x")
    assert resolve_data_path() == Path("data/fer2013.csv.gz")
    (bare_cwd / "data" / "fer2013.csv").write_text("x")
    assert resolve_data_path() == Path("data/fer2013.csv")
    env_file = bare_cwd / "env.csv"
    env_file.write_text("x")
    monkeypatch.setenv("FER2013_DATA", str(env_file))
    assert resolve_data_path() == env_file
    explicit = bare_cwd / "explicit.csv"
    explicit.write_text("x")
    assert resolve_data_path(explicit) == explicit
    assert resolve_data_path(str(explicit)) == explicit


def test_resolve_names_a_missing_explicit_or_env_path(
    bare_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match=r"nowhere\.csv does not exist"):
        resolve_data_path(bare_cwd / "nowhere.csv")
    monkeypatch.setenv("FER2013_DATA", "/no/such/fer.csv")
    with pytest.raises(UserError, match=r"FER2013_DATA=/no/such/fer\.csv"):
        resolve_data_path()


def test_resolve_without_any_data_says_where_to_get_it(bare_cwd: Path) -> None:
    with pytest.raises(UserError) as caught:
        resolve_data_path()
    message = str(caught.value)
    assert "\n" not in message
    for word in (
        "Kaggle",
        "challenges-in-representation-learning-facial-expression-recognition-challenge",
        "fer2013.csv",
        "data/fer2013.csv",
        "--data",
        "FER2013_DATA",
    ):
        assert word in message


# --- the rest of the surface ------------------------------------------------------------


def test_arrays_counts_and_unknown_split(small_csv: Path) -> None:
    ds = load_dataset(small_csv)
    images, labels = ds.arrays("PublicTest")
    assert images.shape == (14, IMAGE_SIZE, IMAGE_SIZE) and labels.shape == (14,)
    assert sorted(labels.tolist()) == sorted(list(range(7)) * 2)
    with pytest.raises(UserError, match="unknown split 'Validation'"):
        ds.arrays("Validation")


def test_check_report_lists_provenance_and_counts(small_csv: Path) -> None:
    ds = load_dataset(small_csv)
    report = check_report(ds)
    for text in (ds.source, ds.sha256, ds.cache_path, "rows:    42", *EMOTIONS, *SPLITS):
        assert text in report
    lines = report.splitlines()
    assert lines[-1].split() == ["total", "42", *["6"] * 7]
    assert next(line for line in lines if line.startswith("Training")).split()[1] == "14"


def test_synthetic_csv_is_reproducible_and_balanced(tmp_path: Path) -> None:
    a = write_synthetic_csv(tmp_path / "a.csv.gz", per_split=21, seed=5)
    b = write_synthetic_csv(tmp_path / "b.gz", per_split=21, seed=5)
    plain = write_synthetic_csv(tmp_path / "c.csv", per_split=21, seed=5)
    forced = write_synthetic_csv(tmp_path / "d.csv", per_split=21, seed=5, compress=True)
    assert a.read_bytes() == b.read_bytes() == forced.read_bytes()
    assert gzip.decompress(a.read_bytes()) == plain.read_bytes()
    assert load_dataset(a).counts() == {split: [3] * 7 for split in SPLITS}
    with pytest.raises(UserError, match="at least 7"):
        write_synthetic_csv(tmp_path / "tiny.csv", per_split=6)


def test_synthetic_images_carry_a_class_signal(synthetic_csv: Path) -> None:
    ds = load_dataset(synthetic_csv)
    means = np.stack([ds.images[ds.labels == k].mean(axis=0) for k in range(7)])
    # Nearest class-mean classification beats chance (1/7) by a wide margin.
    distances = ((ds.images[:, None].astype(float) - means[None]) ** 2).sum(axis=(2, 3))
    assert (distances.argmin(axis=1) == ds.labels).mean() > 0.5


def test_fer_csv_fixture_loads(fer_csv: Path) -> None:
    ds = load_dataset(fer_csv)
    sizes = [sum(row) for row in ds.counts().values()]
    assert len(set(sizes)) == 1 and sizes[0] in (70, 300)


@pytest.mark.real_data
def test_real_data_counts_hash_and_cached_reload(real_data_path: Path) -> None:
    first = load_dataset(real_data_path)
    assert first.counts() == README_COUNTS
    if real_data_path.resolve() == SHARED_DATA.resolve():
        assert first.sha256 == README_GZ_SHA256
    second = load_dataset(real_data_path)
    assert second.cache_path == first.cache_path
    _assert_same_data(first, second)
