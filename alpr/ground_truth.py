"""The evaluation sets on disk: finding the folders that hold ground truth below the one `alpr eval`
is given, and reading their labels (the OpenALPR benchmark's `NAME.txt` beside each image, or
`groundtruth.csv` of plate crops) into Samples, each label checked."""

from __future__ import annotations

import csv
import glob
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import InputError
from common.regions import load_regions
from common.watchlist_entry import normalise_plate

if TYPE_CHECKING:
    from common.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    image: Path
    plate: str
    box_xyxy: tuple[float, float, float, float] | None  # None for a crop: the image is the plate


def load_samples(folder: Path) -> tuple[list[Sample], bool]:
    """The folder's samples and whether they are crops (groundtruth.csv) rather than scenes. A line that is
    not a label (too few fields, a box that is not four finite numbers of positive size, no plate text, an
    image that is not in the folder), or ground truth that is not UTF-8, is an InputError naming the file
    and line: such lines were passed over unsaid, and the figures were of fewer images than given. A
    byte-order mark, a header row and blank lines are passed over."""
    truth = folder / "groundtruth.csv"
    if truth.is_file():
        samples = []
        rows = csv.reader(truth_lines(truth))
        try:
            for number, row in label_rows(rows):
                where = f"{truth}:{number}"
                if len(row) < 3:
                    raise InputError(f"{where}: expected file,region,PLATE")
                samples.append(Sample(image_in(folder, row[0], where), plate_of(row[2], where), None))
        except csv.Error as error:  # a field past csv's limit (128 KiB) ended eval with a traceback
            raise InputError(f"{truth}:{rows.line_num}: not CSV a label can be read from ({error})") from None
        return samples, True
    samples = []
    for label in sorted(t for t in folder.glob("*.txt") if is_label(t)):  # a README.txt beside is no label
        try:
            lines = truth_lines(label)
        except OSError as error:  # unreadable: its image was passed over unsaid
            raise InputError(f"{label}: cannot read this label: {error.strerror or error}") from None
        for number, line in enumerate(lines, start=1):
            where = f"{label}:{number}"
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 6:
                raise InputError(f"{where}: expected file<TAB>x<TAB>y<TAB>width<TAB>height<TAB>PLATE")
            x, y, w, h = box_of(parts[1:5], where)
            samples.append(Sample(image_in(folder, parts[0], where), plate_of(parts[5], where), (x, y, x + w, y + h)))
    labelled = {sample.image.name for sample in samples}
    if unlabelled := sorted(p.name for p in folder.iterdir() if is_image(p) and p.name not in labelled):
        names = ", ".join(ascii(name)[1:-1] for name in unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else "")
        log.warning("%d image(s) in %s have no label and are not measured: %s", len(unlabelled), folder, names)
    return samples, False


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Image files of a NAME.txt set: a .txt file beside one of the same stem is its label."""


def is_image(path: Path) -> bool:
    """Whether `path` is an image file of a set (by its suffix, of any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


HEADER_NAMES = ("file", "filename", "image", "name")
"""A groundtruth.csv whose first row's first cell is one of these has a header row."""


def label_rows(rows: Iterable[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """A groundtruth.csv's label rows, each with its number (from 1, counting every row): a blank row, and
    a header row (the first, its first cell one of HEADER_NAMES), passed over. Lazy, as `rows` is: a
    csv.Error reading them is raised to the caller, whose reader still says the line."""
    for number, row in enumerate(rows, start=1):
        if "".join(row).strip() and not (number == 1 and row[0].strip().lower() in HEADER_NAMES):
            yield number, row


def image_in(folder: Path, name: str, where: str) -> Path:
    """The image a label names: a file in `folder` itself (a name with a folder in it, `..` or an
    absolute path, read photos from elsewhere), else InputError naming `where`."""
    name = name.strip()
    if not name or Path(name).name != name or name in (".", ".."):
        raise InputError(f"{where}: the image must be named by its file name in {folder}, not {ascii(name)[:80]}")
    path = folder / name
    if not path.is_file():
        raise InputError(f"{where}: no image file {ascii(name)[:80]} in {folder}")
    return path


def plate_of(text: str, where: str) -> str:
    """A label's plate text as reads are written, normalised as a watch-list's plates are (upper case, no
    spaces, dashes or dots: truth `YG9 X2G` never matched the read YG9X2G); InputError naming `where`."""
    try:
        return normalise_plate(text)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None


def box_of(fields: list[str], where: str) -> tuple[float, float, float, float]:
    """A label's box (x, y, width, height) from its four fields; InputError naming `where` unless they are
    four finite numbers."""
    try:
        x, y, w, h = (float(v) for v in fields)
    except ValueError:
        x = y = w = h = math.nan
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise InputError(f"{where}: the plate's box must be four numbers (x, y, width, height), of positive size")
    return x, y, w, h


def truth_lines(path: Path) -> list[str]:
    """The lines of a ground-truth file; InputError where it is not UTF-8 text."""
    try:
        return path.read_bytes().decode("utf-8-sig").splitlines()  # a byte-order mark was part of the first name
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: ground truth must be UTF-8 text (byte {error.start} is not)") from None


MAX_SET_DEPTH = 4
"""How far below the folder `alpr eval` is given its sets are looked for (the shared datasets' scenes lie
two down, openalpr-endtoend/us): a folder such as a home folder is not walked whole."""


def dataset_folders(root: Path) -> list[Path]:
    """`root` itself when it holds ground truth, else every folder below it that does, by path, up to
    MAX_SET_DEPTH down: a set's own sub-folders are not looked in, and a folder reached twice (by a link)
    is read once, by its own path. Only the folders just below were looked in: given the shared datasets'
    folder, eval read openalpr-plates alone and passed over openalpr-endtoend/{us,eu,br} unsaid."""
    if root.exists() and not root.is_dir():  # a file: it said "does not exist" (a review)
        raise InputError(f"dataset {root} is not a folder: name the folder of the images and their labels")
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist")

    def has_truth(p: Path) -> bool:  # a notes.txt beside the sets' folders made the root a set of none
        return (p / "groundtruth.csv").is_file() or any(is_label(t) for t in p.glob("*.txt"))

    if has_truth(root):
        return [root]
    folders: list[Path] = []
    seen = {root.resolve()}

    def look_in(folder: Path, depth: int) -> None:  # a folder itself before a link to it
        for path in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: (p.is_symlink(), p.name)):
            if (real := path.resolve()) in seen:  # a link to a folder read already, or above (a loop)
                continue
            seen.add(real)
            if has_truth(path):
                folders.append(path)
            elif depth < MAX_SET_DEPTH:
                look_in(path, depth + 1)

    look_in(root, 1)
    folders.sort()
    if not folders:
        raise InputError(
            f"{root} holds no ground truth (NAME.txt beside images, or groundtruth.csv), nor does any folder"
            f" up to {MAX_SET_DEPTH} below it"
        )
    return folders


def set_name(folder: Path, root: Path) -> str:
    """A set's name in the figures and the errors file: its path below `root` (`openalpr-endtoend/us`;
    two sets of one name in two folders are two), or its own name where `root` is the set."""
    return folder.name if folder == root else folder.relative_to(root).as_posix()


def is_label(path: Path) -> bool:
    """Whether a .txt file is a photo's label (a README.txt or notes.txt beside the photos is not): an image
    of its stem lies beside it (then an unreadable or garbled one is an error naming it, not passed over with
    its image), or its first line holds six tab-separated fields, or begins with the name of a file in its
    folder."""
    if any(is_image(image) for image in path.parent.glob(f"{glob.escape(path.stem)}.*")):
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(4096).decode("utf-8-sig", "replace").strip()
    except OSError:
        return False
    name = first.split("\t")[0].split(" ")[0]
    return first.count("\t") >= 5 or (bool(name) and Path(name).name == name and (path.parent / name).is_file())


UNNAMED_REGION = "any"
"""The region a set is read with where neither its folder, its ground truth nor the settings name one: no
country's formats (common/plate_formats.yaml). The default region, us, read the eu photos 90.7% exactly
right against eu's 98.2% (its prior on the letter O is for US plates): a set of another country's plates
was measured misread by a setting no operator there would choose."""

US_STATES = frozenset(
    ("al", "ak", "az", "ar", "ca", "co", "ct", "dc", "de", "fl", "ga", "hi", "ia", "id", "il", "in", "ks", "ky",
     "la", "ma", "md", "me", "mi", "mn", "mo", "ms", "mt", "nc", "nd", "ne", "nh", "nj", "nm", "nv", "ny", "oh",
     "ok", "or", "pa", "ri", "sc", "sd", "tn", "tx", "ut", "va", "vt", "wa", "wi", "wv", "wy")
)  # fmt: skip
"""The states (and DC) a groundtruth.csv's second column names for a US plate (the benchmark's crops)."""


def region_for(folder: Path, configured: str | None) -> str:
    """The plate region a set is read with: the one its folder is named (`eu`), else the configured one
    (`configured`: ALPR_OCR_REGION or --region where given, else None), else the one a word of its folder's
    name names (`br_day`, `us-gates`; the first), else us where its groundtruth.csv names US states
    (`of_us_states`), else UNNAMED_REGION."""
    if (name := folder.name.lower()) in load_regions():
        return name
    if configured:
        return configured
    return named_region(folder.name) or ("us" if of_us_states(folder) else UNNAMED_REGION)


def named_region(name: str) -> str | None:
    """The region a folder's name, or the first word of it that does (`us-gates`), names; else None."""
    regions = load_regions()
    lowered = name.lower()
    return next((word for word in (lowered, *re.split(r"[^a-z0-9]+", lowered)) if word in regions), None)


MIN_STATES_NAMED = 3
"""The fewest different states a groundtruth.csv must name to be taken for US plates: many states' codes are
countries' too (de, in, ca, id), and a set of German crops, `de` on each row, was read with us's formats
(93.5% exactly right against 99.1% with none: a review)."""


def of_us_states(folder: Path) -> bool:
    """Whether the folder's groundtruth.csv names a US state (US_STATES) in its second column on every
    label row (a header row and blank lines passed over), and at least MIN_STATES_NAMED different ones;
    False without one, or one that cannot be read. Read as a stream, stopping at the first row that names
    no state (a file of millions of rows was read whole, and again by load_samples)."""
    truth, named = folder / "groundtruth.csv", set()
    try:
        with truth.open(encoding="utf-8-sig", newline="") as handle:
            for _number, row in label_rows(csv.reader(handle)):
                state = row[1].strip().lower() if len(row) > 1 else ""
                if state not in US_STATES:
                    return False
                named.add(state)
    except (OSError, UnicodeDecodeError, csv.Error):  # load_samples says what is wrong with it
        return False
    return len(named) >= MIN_STATES_NAMED


def configured_region(settings: Settings) -> str | None:
    """ALPR_OCR_REGION (or --region) where it was given, else None (region_for then reads the set)."""
    return settings.ocr_region if "ocr_region" in settings.model_fields_set else None
