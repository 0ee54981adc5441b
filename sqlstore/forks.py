"""Stores made before ``os.fork()`` keep working in the children.

Servers such as gunicorn with ``--preload``, and multiprocessing's fork
start method, create the store once and fork workers from it. A child
that used the pooled connections it inherited would talk on its parent's
sockets, and the two sessions would corrupt each other. After a fork,
each registered object lets go of its connections, without closing them,
and connects afresh when next used.
"""

from __future__ import annotations

import os
import weakref

_registered: "weakref.WeakSet" = weakref.WeakSet()


def reset_after_fork(obj) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked from here."""
    _registered.add(obj)


def _reset_all() -> None:
    for obj in list(_registered):
        obj.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_reset_all)
