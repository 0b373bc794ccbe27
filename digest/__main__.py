"""The `digest` command (and `python -m digest`): the CLI, loaded with the garbage collector
paused.

Loading the CLI makes ~300,000 objects (SQLAlchemy, SQLModel, pydantic, typer) that live as
long as the process. Collecting while they are made finds nothing to free, and afterwards every
full collection of a long send would walk them all again: so the collector is off while they
load, and they are frozen (gc.freeze: kept out of every later collection) once they have.
"""

import gc


def main() -> None:
    gc.disable()
    try:
        from digest.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()


if __name__ == "__main__":
    main()
