"""Options shared by several verbs, read from the engine registry."""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import click

from streamcolor.colorize import DEFAULT_RENDER_SIZE
from streamcolor.engines.lab import MAX_SATURATION, check_saturation
from streamcolor.engines import DEFAULT_MODEL, available_backends, lab
from streamcolor.errors import StreamcolorError, one_line
from streamcolor.image_io import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from streamcolor.items import JobReport

log = logging.getLogger(__name__)

#: File suffixes of still images (what `streamcolor image` takes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jp2", ".pgm", ".ppm", ".pbm",
                  ".pnm", ".tga", ".dib", ".jfif", ".heic")


#: Exit status of the job verbs: every item done / some items skipped or failed / could not start or could not write.
EXIT_OK, EXIT_ITEMS, EXIT_FATAL = 0, 1, 2


class ByteSize(click.ParamType):
    """A byte count: ``1000``, ``64K``, ``512M``, ``2G`` (powers of 1024)."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", str(value), re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not a size such as 1000, 64K, 512M or 2G", param, ctx)
        size = int(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_")
        if size < 1:  # (said by its option's name, not as the Python field it fills)
            self.fail(f"{value!r}: give at least 1 byte", param, ctx)
        return size


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinity.  Why: NaN passes every bound
    (it is neither below nor above one), and ``--max-ratio nan`` turned the zip-bomb check off."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


def engine_options(f):
    """--model, --backend, --render-size, --saturation."""
    f = click.option("--saturation", type=float, default=None, callback=_saturation, metavar="GAIN",
                     help=f"Gain on predicted colour (a*b*), 0 to {MAX_SATURATION:g}; >1 gives more vivid colours. "
                          "Default: the model's recommendation.")(f)
    f = click.option("-r", "--render-size", type=click.IntRange(lab.SIZE_MULTIPLE, lab.MAX_RENDER_SIZE), default=None,
                     help="Longer side of the network input. Larger: more colour detail, slower. "
                          "Output keeps the input's full resolution. "
                          f"Default: the model's recommendation, else {DEFAULT_RENDER_SIZE}.")(f)
    f = click.option("--backend", type=click.Choice(["auto", *available_backends()]), default="auto",
                     show_default=True, help="Runtime that runs the model.")(f)
    f = click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, callback=_known_model,
                     help="A shipped model name (see `streamcolor models`) or a model bundle folder.")(f)
    return f


def _saturation(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """The library's own check (NaN and infinity refused too), said as a usage error."""
    try:
        check_saturation(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value


def _known_model(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse an unknown model while the command line is read, before a verb creates its output
    folder or lists its inputs (reading the bundle's model.json costs next to nothing)."""
    from streamcolor.engines import EngineError, resolve_model

    try:
        resolve_model(value)
    except (ValueError, EngineError) as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value


def load(model: str, backend: str):
    """Load the engine once for a verb, turning bad names and unloadable models into
    a CLI error with exit status 2 (:data:`EXIT_FATAL`: the run could not start)."""
    from streamcolor.engines import EngineError, load_engine

    try:
        return load_engine(model, backend)
    except (ValueError, EngineError, ImportError) as exc:
        error = click.ClickException(str(exc))
        error.exit_code = EXIT_FATAL
        raise error from exc


def run_job(job: Callable[[], "JobReport"], *, fatal: tuple[type[BaseException], ...] = ()) -> NoReturn:
    """Run a job verb's call and exit: its summary and 0 when every item was
    done, 1 when some were skipped or failed; one error line and 2 when the
    job could not start or write (StreamcolorError, ValueError, or ``fatal``)."""
    try:
        report = job()
    except (StreamcolorError, ValueError, *fatal) as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(EXIT_FATAL)
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get("streamcolor.quiet"):
        click.echo(report.summary())
    elif not report.ok:  # -q: "only errors": the summary says which items failed and where the report is
        click.echo(report.summary(), err=True)
    sys.exit(EXIT_OK if report.ok else EXIT_ITEMS)


def show_ray_progress() -> None:
    """For ``--ray`` runs: let ``streamcolor.ray``'s INFO lines through (which
    cluster is used, how many actors), unless the user asked for quiet (-q)."""
    import logging

    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        logging.getLogger("streamcolor.ray").setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))


# --------------------------------------------------------------------------- -v/-q/--progress on every verb


def _set(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        state = ctx.meta
        if key == "streamcolor.verbose":
            state[key] = state.get(key, 0) + (value or 0)
        elif key == "streamcolor.quiet":
            state[key] = bool(state.get(key)) or bool(value)
        elif value is not None:
            state[key] = value
        apply_output_settings(state)
    return callback


_COMMON: list[tuple[list[str], dict[str, Any]]] = [
    (["-v", "--verbose"], dict(count=True, callback=_set("streamcolor.verbose"), help="More log output (-vv for debug).")),
    (["-q", "--quiet"], dict(is_flag=True, callback=_set("streamcolor.quiet"), help="Only errors, no progress bars.")),
    (["--progress/--no-progress"], dict(default=None, callback=_set("streamcolor.progress"),
                                        help="Progress bars on stderr [default: only when stderr is a terminal].")),
]


def common_params() -> list[click.Option]:
    """The options every verb accepts after its name as well as before it
    (they take effect as soon as they are parsed, so they add up)."""
    return [click.Option(decls, expose_value=False, **kw) for decls, kw in _COMMON]


def existing_options(f):
    """--overwrite and --skip-existing, folded into the verb's ``existing`` argument: "keep" (the
    default: replace only streamcolor's own unchanged earlier output; any other file there is kept
    and the new output gets name~2), "overwrite" or "skip".  Both at once stop the run (usage
    error): no order of words should decide whether a user's file is replaced."""
    @functools.wraps(f)
    def folded(*args: Any, overwrite: bool, skip_existing: bool, **kwargs: Any) -> Any:
        if overwrite and skip_existing:
            raise click.UsageError("--overwrite and --skip-existing contradict each other: give one")
        return f(*args, existing="overwrite" if overwrite else "skip" if skip_existing else "keep", **kwargs)

    folded = click.option("--skip-existing", is_flag=True,
                          help="Leave any output path where a file already is, and that input undone.")(folded)
    return click.option("--overwrite", is_flag=True,
                        help="Replace whatever file is at an output's path, yours too.  Without either: only "
                             "streamcolor's own earlier output, unchanged since, is replaced; any other file "
                             "there is kept and the new output gets name~2.")(folded)


def common_options(f):
    """Decorator: the :func:`common_params` on a verb itself (so the verb's
    ``command`` has them when called directly, as tests and scripts do)."""
    for decls, kw in reversed(_COMMON):
        f = click.option(*decls, expose_value=False, **kw)(f)
    return f


def apply_output_settings(state: dict[str, Any]) -> None:
    """Set the log level from the -v/-q counted so far."""
    verbose = state.get("streamcolor.verbose", 0)
    level = logging.ERROR if state.get("streamcolor.quiet") else (logging.WARNING, logging.INFO,
                                                                   logging.DEBUG)[min(verbose, 2)]
    logging.getLogger().setLevel(level)


#: Why an empty path is refused (see :class:`PathArg`).
EMPTY_PATH = ("an empty path (an unset shell variable?): name a file or folder, or '.' for this one")


class PathArg(click.Path):
    """``click.Path`` that refuses an empty value.

    Why: pathlib reads ``""`` as ``"."``, so ``streamcolor batch "$SRC" -o out/`` with
    ``$SRC`` unset colorized every photo under the folder the command ran in."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail(EMPTY_PATH, param, ctx)
        return super().convert(a_file_named_dash(value), param, ctx)


def a_file_named_dash(value: Any) -> Any:
    """``./-`` (a file named ``-``) as its absolute path, so that it is not taken for stdin or
    stdout: pathlib reads ``./-`` as ``-``, and the verbs compare paths with ``Path("-")``."""
    if isinstance(value, str) and value != "-" and os.path.normpath(value) == "-":
        return os.path.abspath(value)
    return value


def non_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: a plain string argument (a path or URI) that is empty is refused as :class:`PathArg` does."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter(EMPTY_PATH, ctx=ctx, param=param)
    return value


def output_option(help_text: str, **kwargs: Any):
    """-o/--output as a Path; a value ending in a path separator (``-o z.jpg/``)
    is recorded as meant to be a folder, whatever its name looks like (pathlib
    drops the separator; :func:`output_is_folder` reads the record)."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
        if value is None:
            return None
        non_empty(ctx, param, value)  # "" is "." to pathlib: the output would land wherever the command runs
        ctx.meta["streamcolor.output_folder"] = value.endswith(("/", os.sep)) and value.strip("/" + os.sep) != ""
        return Path(a_file_named_dash(value))

    return click.option("-o", "--output", type=click.Path(), callback=callback, help=help_text, **kwargs)


def make_output_folder(folder: Path) -> None:
    """``mkdir -p`` of an output folder (OSError as mkdir's), and when the command ends, the folders
    it made removed again if they are still empty: a run that wrote nothing (a missing input, an
    engine that does not load) left an empty folder behind."""
    made = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    folder.mkdir(parents=True, exist_ok=True)

    def remove_if_empty() -> None:
        for p in made:  # (deepest first)
            try:
                p.rmdir()
            except OSError:  # (not empty: something was written)
                return

    if made:
        click.get_current_context().call_on_close(remove_if_empty)


def output_is_folder() -> bool:
    """Whether -o was written with a trailing separator (see :func:`output_option`)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get("streamcolor.output_folder"))


def warn_quality_unused(fmt: str) -> None:
    """Say that ``--quality``, given on the command line, does nothing for a lossless ``--format``
    (as `image` says it: an option that has no effect is said)."""
    ctx = click.get_current_context(silent=True)
    if (ctx is not None and fmt in ("png", "tiff", "bmp")
            and ctx.get_parameter_source("quality") == click.core.ParameterSource.COMMANDLINE):
        logging.getLogger("streamcolor").warning("--quality ignored: %s output is lossless", fmt.upper())


def progress_setting() -> bool | None:
    """What the verbs pass as ``progress=``: False with -q or --no-progress, True
    with --progress, else None (a bar only when stderr is a terminal)."""
    ctx = click.get_current_context(silent=True)
    state = ctx.meta if ctx is not None else {}
    if state.get("streamcolor.quiet"):
        return False
    return state.get("streamcolor.progress")


def say(message: str) -> None:
    """A line for the person at the terminal, on stderr (stdout may carry data); none with -q.
    One line: a file's name in it cannot start another (:func:`~streamcolor.errors.one_line`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get("streamcolor.quiet"):
        click.echo(one_line(message), err=True)


# --------------------------------------------------------------------------- the right verb for a file


def verb_for_path(name: str | Path) -> str | None:
    """The verb that takes this file: "image", "video" or "batch" (folders,
    archives); None when its name and kind say nothing."""
    from streamcolor.engines.archives import kind_by_name

    path = Path(name)
    if str(name) != "-" and path.is_dir():
        return "batch"
    lower = path.name.lower()
    if kind_by_name(lower):
        return "batch"
    if lower.endswith(VIDEO_SUFFIXES):  # (image_io's: the names it knows are videos, not images)
        return "video"
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    return None


def suggested_command(path: str | Path, verb: str, folder: Path | None = None) -> str:
    """A command line that would colorize ``path`` with ``verb``, with a sensible output name;
    ``folder``: the output folder the user gave (-o), kept for ``image`` and ``video``.  Names are
    quoted for a POSIX shell (``'my film.mp4'``), and one that starts with ``-`` comes after
    ``./``, so the line can be pasted as it is (a name with a newline, an escape or bytes that are
    not UTF-8 in bash's ``$'...'``)."""
    from streamcolor.engines.archives import kind_by_name

    path = Path(path)

    def arg(value: str | Path) -> str:
        text = str(value)
        text = f"./{text}" if text.startswith("-") else text
        if one_line(text) != text:  # a newline, an escape, bytes that are not UTF-8: bash's $'...' says them
            return "$'" + one_line(text.replace("\\", "\\\\")).replace("'", "\\'") + "'"
        return shlex.quote(text)

    if folder is not None and verb in ("image", "video"):
        return f"streamcolor {verb} {arg(path)} -o {arg(os.path.join(folder, ''))}"
    if verb == "video":
        return f"streamcolor video {arg(path)}"
    if verb == "batch":
        kind = kind_by_name(path.name)
        stem = path.name[: -len(next(s for s in _archive_suffixes(kind) if path.name.lower().endswith(s)))] \
            if kind else path.name
        out = f"{stem or 'out'}-colour/"
        return f"streamcolor batch {arg(path)} -o {arg(out)}"
    from streamcolor.image_io import output_suffix

    out = f"{path.stem}-colour{output_suffix(path)}"
    return f"streamcolor image {arg(path)} -o {arg(out)}"


def _archive_suffixes(kind: str) -> tuple[str, ...]:
    from streamcolor.engines.archives import ARCHIVE_SUFFIXES

    return ARCHIVE_SUFFIXES[kind]


#: Archive suffixes streamcolor does not write: named as a batch output, they would silently be a folder.
UNPACKED_SUFFIXES = (".rar", ".7z", ".zst", ".tzst", ".lz", ".lz4", ".lzma", ".tlz", ".gz", ".bz2", ".xz", ".z",
                     ".cab", ".iso", ".arj")


def refuse_file_name_for_folder(output: Path, inputs: int, verb: str) -> None:
    """Stop (usage error) when ``-o`` would silently become a folder although its name says
    a file: an image, video or archive name for several inputs of ``image``/``video``, and for
    ``batch`` (whose output is a folder, or an archive it packs: zip or tar) an image or video
    name or an archive kind it does not write.  ``-o NAME/`` (a trailing slash) or an existing
    folder is always a folder."""
    from streamcolor.engines.archives import kind_by_name

    if output_is_folder() or output.is_dir() or str(output) == "-":
        return
    lower = output.name.lower()
    said = verb_for_path(output)
    if verb in ("image", "video") and inputs > 1 and said is not None:
        kind = {"image": "an image file", "video": "a video file", "batch": "an archive"}[said]
        raise click.UsageError(f"-o {output} names {kind}, but {inputs} inputs need a folder "
                               f"(-o {output}/ makes a folder of that name)")
    if verb == "batch" and said in ("image", "video"):
        raise click.UsageError(f"-o {output} names {'an image' if said == 'image' else 'a video'} file; batch "
                               f"writes a folder, or packs one into a .zip or .tar (-o {output}/ makes a folder "
                               "of that name)")
    if verb == "batch" and not kind_by_name(lower) and lower.endswith(UNPACKED_SUFFIXES):
        raise click.UsageError(f"-o {output}: streamcolor packs .zip, .tar, .tar.gz (.tgz), .tar.xz and .tar.bz2 "
                               f"archives, not {output.name}; -o {output}/ makes a folder of that name")


def distinct(paths: "list[Path] | tuple[Path, ...]") -> list[Path]:
    """``paths`` with a file given twice (``a.jpg ./a.jpg``, a shell glob overlapping a name)
    kept once, with a warning: the second would only be colorized again into ``name~2``.  A
    link under another name (``latest.jpg -> 2023.jpg``) is its own output, so it stays."""
    seen: set[tuple[str, str]] = set()
    out = []
    for path in paths:
        key = (os.path.realpath(path), path.name) if str(path) != "-" else ("-", "-")
        if key in seen:
            log.warning("%s: given more than once; colorized once", path)
            continue
        seen.add(key)
        out.append(path)
    return out


def _medium_by_header(path: Path) -> str | None:
    """"image" or "video" by what the file holds (Pillow's header, then FFmpeg's), whatever its
    name; None when it is not a regular file or neither can read it."""
    from streamcolor.image_io import document_kind, image_kind
    from streamcolor.video.containers import is_video_file

    if not path.is_file() or document_kind(path):  # (a PDF or EPS: the verb's own error says what to do)
        return None
    kind = image_kind(path)
    if kind == "huge":  # (a pixel bomb, still or animated: the verb's own limit says so, not a loop of verbs)
        return None
    if kind is not None:  # (a multi-page TIFF: `image` says to split it, as `batch` does; `video` too)
        return {"animation": "video", "pages": "pages"}.get(kind, "image")
    return "video" if is_video_file(path) else None


def output_folder_given(output: Path | None) -> Path | None:
    """The -o that names a folder (a trailing separator, no extension, or an existing folder), else None."""
    if output is None or output == Path("-"):
        return None
    return output if output_is_folder() or output.suffix == "" or output.is_dir() else None


def check_medium(paths: "list[Path] | tuple[Path, ...]", verb: str, folder: Path | None = None) -> list[Path]:
    """The inputs that belong to this verb; those that belong to another are named with the
    command to run instead: one error line each, left out (the verb then exits 1 when it is done
    with the others), or a usage error (exit 2, before loading anything) when no input is left.
    ``folder``: the user's -o folder (:func:`output_folder_given`), which the hint keeps.

    Between ``image`` and ``video`` the file's header has the last word where the file is there:
    a film named ``.jpg`` or an animated GIF is a video, a photo named ``.mp4`` a photo; a file
    there that is neither (random bytes, empty, a broken link) is left to the verb, whose own
    error says why it cannot be read, rather than sent by its name to a verb that fails too."""
    kept: list[Path] = []
    misfits: list[str] = []
    for path in paths:
        right = verb_for_path(path)
        if verb in ("image", "video") and right != "batch" and os.path.lexists(path):
            right = _medium_by_header(path)
            if right == "pages" and verb == "video":
                misfits.append(f"{path}: a multi-page TIFF, not a video; split it into one file per page "
                               "(then `streamcolor image`)")
                continue
            if right in (None, "pages"):
                kept.append(path)
                continue
        if right is None or right == verb:
            kept.append(path)
            continue
        what = {"batch": "a folder" if path.is_dir() else "an archive", "video": "a video", "image": "an image"}[right]
        hint = suggested_command(path, right, folder)  # (with the user's -o folder, where one was given)
        if verb == "video" and path.is_dir():  # (batch colorizes a folder's photos, never its videos)
            name = path.resolve().name or "videos"
            misfits.append(f"{path}: a folder, not a video; give its videos (`streamcolor video "
                           f"{Path(path, '*.mp4')} -o {name}-colour/`), or run `{hint}` for its photos")
            continue
        misfits.append(f"{path}: {what}, not {'an image' if verb == 'image' else 'a video'}; run `{hint}`")
    if misfits and not kept:
        raise click.UsageError(misfits[0] if len(misfits) == 1 else
                               "no input is " + ("an image" if verb == "image" else "a video") + ":\n  "
                               + "\n  ".join(misfits))
    for line in misfits:
        log.error("%s; left out", line)
    return kept
