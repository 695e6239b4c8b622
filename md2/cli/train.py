"""Train Monodepth2: mono, stereo or mono+stereo; one GPU, several, or the CPU (the reference's train.py)."""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Optional, Union, get_args, get_origin, get_type_hints

import typer

from md2.cli.common import status_console
from md2.core.train.config import MODALITIES, SECTIONS, build_config
from md2.core.train.prefault import start_prefault, start_prefault_for_run
from md2.errors import UsageError

NAME = "train"
EPILOG = (
    "Examples:  md2 train --modality mono --model-name mono_model  |  "
    "md2 train --modality stereo --model-name stereo_model  |  "
    "md2 train --modality mono+stereo --model-name ms --config run.yaml  |  "
    "md2 train --resume ~/tmp/mono_model  |  "
    "torchrun --nproc-per-node 4 -m md2 train --modality mono --batch-size 6"
)

# Reference-style flags whose name already says "off": give them an explicit opposite.
_NEGATIVE_FLAGS = {"no_ssim": "--ssim", "disable_automasking": "--enable-automasking"}


def _option(name: str, item: dataclasses.Field, annotation: Any) -> inspect.Parameter:
    """A Typer option for one config field: its help, its default shown, None meaning "not given"."""
    kebab = "--" + name.replace("_", "-")
    origin = get_origin(annotation)
    if origin in (Union, UnionType):  # Optional[X] and X | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
        origin = get_origin(annotation)
    default = item.default
    if origin is tuple:
        cli_type, default = str, None if default is None else ",".join(map(str, default))
    elif annotation is bool:
        cli_type = bool
        kebab = f"{kebab}/{_NEGATIVE_FLAGS.get(name, '--no-' + name.replace('_', '-'))}"
    else:
        cli_type = annotation
    section = next(s for s, cls in SECTIONS.items() if name in {f.name for f in dataclasses.fields(cls)})
    info = typer.Option(kebab, help=item.metadata["help"], show_default=default is not None,
                        rich_help_panel=f"{section} options")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[Optional[cli_type], info])


def _build_parameters() -> list[inspect.Parameter]:
    modalities = ", ".join(MODALITIES)
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("modality", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option(help=f"Preset of the reference's commands: {modalities}. "
                                             "Options given explicitly win.")]),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[Path], typer.Option(help="YAML file of options (the command line wins).")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[Path], typer.Option(help="Continue the run in this folder (LOG_DIR/MODEL_NAME) where it stopped.")]),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--quiet", "-q", help="Only errors: no progress, notes or summary.")]),
        inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--verbose", "-v", help="Also the resolved options, every logged loss and every "
                                                        "skipped sample.")]),
    ]
    for cls in SECTIONS.values():
        hints = get_type_hints(cls)
        parameters.extend(_option(item.name, item, hints[item.name]) for item in dataclasses.fields(cls))
    return parameters


def command(ctx: typer.Context, **options: Any) -> None:
    """Train Monodepth2: mono, stereo or mono+stereo; one GPU, several, or the CPU (the reference's train.py)."""
    modality = options.pop("modality")
    config_file = options.pop("config")
    resume = options.pop("resume")
    quiet, verbose = options.pop("quiet"), options.pop("verbose")
    console = status_console(quiet, verbose)  # refuses both; lines never wrapped mid-phrase when piped
    # A corrupt PNG is reported as one DataError line; OpenCV's own warning about it (also in the loader
    # workers, which inherit the environment) would only repeat it.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # Only what the user typed overrides presets and YAML files; the shown defaults are the dataclass's.
    options = {name: value for name, value in options.items() if _given(ctx, name)}
    if resume is not None:
        if modality is not None or config_file is not None:
            raise UsageError("--resume continues a run with its saved options; --modality and --config do not apply")
        start_prefault_for_run(resume)
        from md2.core.train.loop import resume_training

        resume_training(resume, overrides=options, console=console, verbose=verbose)
        return
    config = build_config(options, modality=modality, config_file=config_file)
    start_prefault(config)  # on the CPU, the first step's memory is faulted in while torch is imported
    from md2.core.train.loop import run_training

    run_training(config, console=console, verbose=verbose)


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


command.__signature__ = inspect.Signature(_build_parameters())  # type: ignore[attr-defined]
command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
