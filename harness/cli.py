"""The `bench` command line: thin commands over the library. The only module that prints."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .frameworks import probe_all

__all__ = ["main", "cli"]


class _Group(click.Group):
    """Library errors become one-line messages and exit code 2; --debug shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (KeyError, ValueError, TypeError, OSError) as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise click.UsageError(str(message), ctx) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fwbench")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """fwbench: the same model, with the same weights, in every framework.

    Is framework X really faster than Y for my model, and does it compute the same thing?

    \b
    Examples:
      bench list                 models and frameworks
      bench list --format json   the same, for scripts
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _si(n: float) -> str:
    """27, 14.2k, 5.67M: a count a person reads at a glance."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _model_rows() -> list[dict]:
    from reference_impl import models

    rows = []
    for spec in models.all_specs():
        rows.append({
            "name": spec.name,
            "params": spec.num_params,
            "flops_per_sample": spec.flops_per_sample,
            "input_shape": list(spec.input_shape),
            "loss": spec.loss,
            "optimizer": spec.optimizer.kind,
            "summary": spec.summary,
        })
    return rows


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def list_cmd(fmt: str) -> None:
    """The catalogue's models and the frameworks, with availability.

    FLOPs are counted from each model's spec for one sample's forward pass: 2 per multiply-add of
    dense and conv layers, plus 1 per bias add, activation output and pooling comparison.
    """
    models = _model_rows()
    frameworks = [
        {"name": s.name, "available": s.available, "version": s.version, "reason": s.reason}
        for s in probe_all()
    ]
    if fmt == "json":
        click.echo(json.dumps({"models": models, "frameworks": frameworks}, indent=2))
        return
    click.echo(f"Models ({len(models)})")
    click.echo(f"  {'name':<20} {'params':>8} {'FLOPs/sample':>12}  {'input':<8} {'loss':<32} summary")
    for m in models:
        shape = "x".join(map(str, m["input_shape"]))
        click.echo(f"  {m['name']:<20} {m['params']:>8,} {_si(m['flops_per_sample']):>12}  "
                   f"{shape:<8} {m['loss']:<32} {m['summary']}")
    click.echo("")
    click.echo(f"Frameworks ({sum(f['available'] for f in frameworks)} of {len(frameworks)} available)")
    for f in frameworks:
        state = f"available   {f['version']}" if f["available"] else f"unavailable {f['reason']}"
        click.echo(f"  {f['name']:<12} {state}")


def main() -> None:
    cli(prog_name="bench")


if __name__ == "__main__":
    sys.exit(main())
