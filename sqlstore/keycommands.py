"""The commands for encryption at rest: keygen, encrypt, rotate-key.

Keys are read from ``SQLSTORE_ENCRYPTION_KEYS`` only, never from an
option: a key on the command line would be in the shell's history and in
every process listing.
"""

from __future__ import annotations

import contextlib
import sys

import click

from . import config, crypto, rekey
from .errors import ConfigurationError, SqlStoreError


def add_to(group: click.Group, url_option) -> None:
    """Register the commands on the ``sqlstore`` group."""
    group.add_command(keygen)
    group.add_command(url_option(_batch_option(encrypt)))
    group.add_command(url_option(_batch_option(rotate_key)))


def _batch_option(command):
    return click.option(
        "--batch-size",
        default=rekey.BATCH_SIZE,
        show_default=True,
        type=click.IntRange(1, 10_000),
        help="Rows per transaction.",
    )(command)


@click.command()
def keygen() -> None:
    """Print a new encryption key (for SQLSTORE_ENCRYPTION_KEYS)."""
    click.echo(crypto.generate_key())


@click.command()
def encrypt(url, batch_size) -> None:
    """Encrypt the plain-text tokens in the table under the first key.

    Safe while the application runs, and resumable: run it again after a
    crash. Give the application the keys first, so that what it saves
    meanwhile is encrypted already.
    """
    _run(url, batch_size, rekey.encrypt, "encrypted")


@click.command("rotate-key")
def rotate_key(url, batch_size) -> None:
    """Re-encrypt every row under the first key of SQLSTORE_ENCRYPTION_KEYS.

    Put the new key first and keep the old ones after it, in the
    application too, until this has finished; then the old keys can go.
    """
    _run(url, batch_size, rekey.rotate, "re-encrypted")


def _run(url, batch_size: int, job, verb: str) -> None:
    cipher = crypto.cipher_for(None)
    if not cipher.encrypts:
        raise ConfigurationError(
            f"no encryption keys: set {crypto.ENV_VAR} to the keys, the one "
            "to encrypt with first (make one with `sqlstore keygen`)"
        )
    target = config.database_url(url)
    where = config.mask_url(target)
    with _progress(target) as advance:
        tally = job(target, cipher, batch_size=batch_size, progress=advance)
    click.echo(f"{where}: {tally.describe(verb)}")
    if tally.failed:
        for failure in tally.failures:
            click.echo(f"  not rewritten: token row {failure}", err=True)
        hidden = tally.failed - len(tally.failures)
        if hidden > 0:
            click.echo(f"  ... and {hidden} more", err=True)
        raise SqlStoreError(f"{tally.failed} rows could not be rewritten")


@contextlib.contextmanager
def _progress(target: str):
    # A bar only for a person watching: in a log file it would be noise.
    if not sys.stderr.isatty():
        yield None
        return
    total = rekey.count_rows(target)
    with click.progressbar(length=total, file=sys.stderr, label="rows") as bar:
        yield bar.update
